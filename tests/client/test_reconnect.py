"""Reconnection: the gateway is stopped mid-run and a new one started on the same port.

Requests that had produced output fail with a retryable `StreamInterruptedError` (never replayed); requests that
had produced nothing are re-sent on a new stream; the same stream object keeps working afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from integration_api.client import APIConnectionError, AsyncClient, Client, StreamInterruptedError
from tests.client.conftest import PROBE, target_of, user
from tests.conftest import RunningGateway, make_settings, start_gateway


async def _restart(old: RunningGateway, tmp_path: Path, after: float = 0.2) -> RunningGateway:
    """Stop `old` at once (every call is cut), wait, then start a new gateway on the same port and data dir."""
    port = old.server.port
    await old.server.stop()
    await old.channel.close()
    await asyncio.sleep(after)
    return await start_gateway(make_settings(tmp_path, port=port))


async def _stop(running: RunningGateway) -> None:
    await running.channel.close()
    await running.server.stop()


async def test_started_requests_fail_and_unstarted_ones_are_resent(tmp_path: Path) -> None:
    first = await start_gateway(make_settings(tmp_path))
    client = AsyncClient(target_of(first), api_key=first.api_key)
    second: RunningGateway | None = None
    try:
        async with client.stream(PROBE) as stream:
            talking = stream.chat(user(" ".join(["w"] * 100)), parameters={"simulated_delay_ms": 20}, request_id="t")
            # A long delay before its first word: it has produced nothing when the server goes away.
            silent = stream.chat(user("late"), parameters={"simulated_delay_ms": 500}, request_id="s")
            events = aiter(talking)  # (keep the iterator: dropping a partly read one cancels the request)
            await anext(events)
            second = await _restart(first, tmp_path)

            with pytest.raises(StreamInterruptedError) as caught:
                await talking.text()
            assert caught.value.retryable and caught.value.request_id == "t" and "not re-sent" in caught.value.message
            assert await silent.text() == "late"
            assert second.probe.started == ["s"], "only the silent request is replayed, on the new server"
            assert await stream.chat(user("the same stream works")).text() == "the same stream works"
    finally:
        await client.aclose()
        await _stop(second or first)


async def test_gives_up_after_bounded_attempts(tmp_path: Path) -> None:
    running = await start_gateway(make_settings(tmp_path))
    client = AsyncClient(target_of(running), api_key=running.api_key, reconnect_attempts=2)
    try:
        async with client.stream(PROBE) as stream:
            assert await stream.chat(user("warm up")).text() == "warm up"
            silent = stream.chat(user("never answered"), parameters={"simulated_delay_ms": 2000})
            await asyncio.sleep(0.05)
            await _stop(running)
            with pytest.raises(APIConnectionError) as caught:
                await silent.text()
            assert not isinstance(caught.value, StreamInterruptedError) and caught.value.retryable
            assert "2 reconnection attempts failed" in caught.value.message
    finally:
        await client.aclose()


async def test_sync_client_stream_survives_a_restart(tmp_path: Path) -> None:
    first = await start_gateway(make_settings(tmp_path))
    client = Client(target_of(first), api_key=first.api_key)
    stream = client.stream(PROBE)
    try:
        assert await asyncio.to_thread(lambda: stream.chat(user("before")).text()) == "before"
        second = await _restart(first, tmp_path, after=0.05)
        try:
            assert await asyncio.to_thread(lambda: stream.chat(user("after restart")).text()) == "after restart"
        finally:
            await _stop(second)
    finally:
        await asyncio.to_thread(client.close)
