"""Fixtures for routing tests: a real gateway whose settings configure routes, OpenAI emulators as targets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from integration_api.proto import integration_api_pb2 as pb
from integration_api.testing.emulators import Emulator, Fault, RecordedRequest, Script, emulator_for
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import Collected, chat_request, metrics


@asynccontextmanager
async def routed_gateway(
    tmp_path: Path, routes: Mapping[str, Any], **overrides: object
) -> AsyncIterator[RunningGateway]:
    """A gateway serving `routes` (the `routes` setting's shape), with fast retries."""
    settings = make_settings(tmp_path, routes=dict(routes), **overrides)
    running = await start_gateway(settings)
    try:
        yield running
    finally:
        await running.channel.close()
        await running.server.stop()


@pytest.fixture
async def emulators() -> AsyncIterator[list[Emulator]]:
    """Two OpenAI emulators: two deployments of one vendor."""
    started = [emulator_for("openai"), emulator_for("openai")]
    for emulator in started:
        await emulator.start()
    yield started
    for emulator in started:
        await emulator.stop()


def openai_target(emulator: Emulator, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": model,
        "credential": {"key": "sk-route", "base_url": emulator.base_url},
        **extra,
    }


def stalled_then_fast(emulators: list[Emulator], stalled_text: str, fast_text: str) -> dict[str, Any]:
    """A route hedging after 50 ms (no budget limit) from a first target that never sends a chunk to a fast one
    ("openai/slow", then "openai/quick")."""
    stalled, fast = emulators
    stalled.default_script = Script(text=stalled_text, fault=Fault(stall_after_chunks=0))
    fast.default_script = Script(text=fast_text)
    return {
        "targets": [openai_target(stalled, "slow"), openai_target(fast, "quick")],
        "hedge_after_ms": 50,
        "hedge_budget_percent": 100,
    }


def chats(emulator: Emulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


async def run_one(
    gateway: RunningGateway, route: str, request_id: str = "r1", **params: Any
) -> tuple[str, pb.ChatResponse]:
    """One StreamChat request to `route:NAME`: (the text of its deltas, its one terminal frame)."""
    stream = gateway.open_stream()
    await stream.send(chat_request(request_id, provider=f"route:{route}", **params))
    collected: Collected = await stream.read_until_done([request_id])
    await stream.call.done_writing()
    return collected.text(request_id), collected.terminal(request_id)


def served_by(frame: pb.ChatResponse) -> str:
    assert frame.servedBy == metrics(frame)["SERVED_BY"]
    return frame.servedBy


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
