"""Per-principal stream limits and the idle-stream timeout, on a real gateway.

Over `max_streams_per_principal` (or the key scope's `max_streams`) a new stream ends with RESOURCE_EXHAUSTED
before any request runs, the open ones go on, and closing one frees its place. With `stream_idle_timeout_s`, a stream
with nothing in flight and nothing received for that long ends with UNAVAILABLE; one with a request in flight does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from auth.principal import KeyScope
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import StreamDriver, chat_request


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(make_settings(tmp_path, max_streams_per_principal=2, stream_idle_timeout_s=0.5))
    yield running
    await running.channel.close()
    await running.server.stop()


async def served(stream: StreamDriver, request_id: str, delay_ms: int = 0) -> bool:
    await stream.send(chat_request(request_id, provider="simulated", simulated_delay_ms=delay_ms))
    return (await stream.read_until_done([request_id])).terminal(request_id).success


async def refusal(stream: StreamDriver) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read_to_end()
    return caught.value


async def test_streams_over_the_limit_are_refused(limited: RunningGateway) -> None:
    first, second = limited.open_stream(), limited.open_stream()
    assert await served(first, "a") and await served(second, "b")  # both are open and counted
    third = limited.open_stream()
    error = await refusal(third)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 open streams" in (error.details() or "")
    assert await served(first, "c")  # the open ones go on
    await second.call.done_writing()
    await second.read_to_end()
    fourth = limited.open_stream()  # the place second held is free again
    assert await served(fourth, "d")
    other_key, _ = limited.store.create("other", "org-1", "proj-1")
    assert await served(limited.open_stream((("x-api-key", other_key),)), "e")  # counted per key


async def test_the_key_scope_lowers_the_limit(limited: RunningGateway) -> None:
    key, _ = limited.store.create("one-stream", "org-1", "proj-1", scope=KeyScope(max_streams=1))
    metadata = (("x-api-key", key),)
    only = limited.open_stream(metadata)
    assert await served(only, "a")
    error = await refusal(limited.open_stream(metadata))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_idle_stream_is_ended(limited: RunningGateway) -> None:
    streams = [limited.open_stream(), limited.open_stream()]
    for number, stream in enumerate(streams):
        assert await served(stream, f"r{number}")
    for stream in streams:
        error = await refusal(stream)  # nothing more is sent: the server ends the stream
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "idle" in (error.details() or "")
    # Their places are free again: two new streams of the same key are served.
    assert await served(limited.open_stream(), "x") and await served(limited.open_stream(), "y")


async def test_a_request_in_flight_keeps_a_stream_open(limited: RunningGateway) -> None:
    stream = limited.open_stream()
    # The reply takes about four idle timeouts; the stream is not idle meanwhile.
    assert await served(stream, "slow", delay_ms=200)
    await stream.call.done_writing()
    await stream.read_to_end()
    assert await stream.call.code() == grpc.StatusCode.OK


def test_both_are_off_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.stream_idle_timeout_s == 0 and settings.max_streams_per_principal == 0
