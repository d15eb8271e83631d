"""An SDK client leaving the cache (expired, or pushed out by newer credentials) while a request streams through
it is closed only after that request: the stream is never cut in the middle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from integration_api.testing.emulators.base import Script
from integration_api.testing.emulators.openai import OpenAIEmulator
from tests.conftest import make_settings, start_gateway
from tests.fake_clock import FakeClock
from tests.grpc_helpers import chat_request, credential

WORDS = " ".join(f"w{i}" for i in range(20))
TTL_S = 600.0


@pytest.mark.parametrize("evicted_by", ["expiry", "size"])
async def test_a_stream_outlives_its_clients_eviction(tmp_path: Path, evicted_by: str) -> None:
    size = 16 if evicted_by == "expiry" else 1
    gateway = await start_gateway(make_settings(tmp_path, client_cache_ttl_s=TTL_S, client_cache_size=size))
    clock = FakeClock()
    gateway.server.clients.clock = clock  # before any request: no entry was stamped with the real clock
    try:
        async with OpenAIEmulator() as emulator:
            emulator.enqueue(Script(text=WORDS, chunk_delay_s=0.05))  # ~1 s of streaming
            slow, other = gateway.open_stream(), gateway.open_stream()
            slow_credential = credential(key="sk-slow", base_url=emulator.base_url)
            await slow.send(chat_request("slow", provider="openai", cred=slow_credential, name="gpt-4o"))
            first = await asyncio.wait_for(slow.call.read(), 5)
            assert first.requestId == "slow"
            if evicted_by == "expiry":
                assert clock.reads  # the cache stamps its entries with this clock
                clock.now += TTL_S
            # A request whose client lookup evicts the slow request's client: expired, or one too many.
            other_key = "sk-slow" if evicted_by == "expiry" else "sk-other"
            other_credential = credential(key=other_key, base_url=emulator.base_url)
            await other.send(chat_request("other", provider="openai", cred=other_credential, name="gpt-4o"))
            assert (await other.read_until_done(["other"])).terminal("other").HasField("data")
            collected = await slow.read_until_done(["slow"])
            terminal = collected.terminal("slow")
            assert not terminal.HasField("error"), terminal.error
            assert "".join(first.data.assistant.contents) + collected.text("slow") == WORDS
            for driver in (slow, other):
                await driver.call.done_writing()
    finally:
        await gateway.channel.close()
        await gateway.server.stop()
