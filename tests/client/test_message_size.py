"""A request over the message limit is refused by the client, for that request only.

gRPC refuses an oversized message for the whole call, so sent as is it would fail every request on the stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_api.client import (
    AsyncChatResponse,
    AsyncClient,
    BadRequestError,
    RequestTooLargeError,
    TextDelta,
)
from tests.client.conftest import SIM, async_client_for, user
from tests.conftest import make_settings, start_gateway

MIB = 1024 * 1024


async def test_an_oversized_request_fails_alone_and_the_stream_goes_on(client: AsyncClient) -> None:
    async with client.stream(SIM) as stream:
        slow = stream.chat(user("one two three four five"), parameters={"simulated_delay_ms": 20}, request_id="slow")
        events = aiter(slow)
        first = await anext(events)  # in flight on the stream
        assert isinstance(first, TextDelta)
        with pytest.raises(RequestTooLargeError) as info:
            stream.chat(user("x" * (17 * MIB)), request_id="big")
        error = info.value
        assert isinstance(error, BadRequestError) and error.status == "INVALID_ARGUMENT" and not error.retryable
        assert error.request_id == "big" and error.limit == 16 * MIB and error.size > 17 * MIB
        copied = error.copy(request_id="other")
        assert isinstance(copied, RequestTooLargeError) and (copied.size, copied.limit) == (error.size, error.limit)
        rest = [event async for event in events]
        assert first.text + "".join(e.text for e in rest if isinstance(e, TextDelta)) == "one two three four five"
        assert (await slow.result()).finish_reason == "stop"
        assert await stream.chat(user("still here")).text() == "still here"
        assert stream.in_flight == 0


async def test_the_limit_is_the_one_grpc_applies(tmp_path: Path) -> None:
    """A request of exactly `max_message_bytes` reaches a gateway with that limit; one byte more is refused."""
    limit = 64 * 1024
    gateway = await start_gateway(make_settings(tmp_path, max_message_bytes=limit))
    try:
        async with async_client_for(gateway, max_message_bytes=limit) as client, client.stream(SIM) as stream:

            def send(padding: int) -> AsyncChatResponse:
                reply = {"simulated_reply": "ok"}  # a short answer: the echo would be over the limit on the way back
                return stream.chat(user("x" * padding), parameters=reply, request_id="r")

            with pytest.raises(RequestTooLargeError) as probe:
                send(limit)
            overhead = probe.value.size - limit  # the same for any padding near the limit (same varint widths)
            with pytest.raises(RequestTooLargeError):
                send(limit - overhead + 1)
            assert await send(limit - overhead).text() == "ok"
    finally:
        await gateway.channel.close()
        await gateway.server.stop()


async def test_an_oversized_unary_call_is_refused_too(client: AsyncClient) -> None:
    """Sent, gRPC would fail it as RESOURCE_EXHAUSTED: a retryable `RateLimitError`, which it is not."""
    with pytest.raises(RequestTooLargeError):
        await client.chat(user("x" * (17 * MIB)), provider=SIM)
    assert (await client.chat(user("small"), provider=SIM)).text == "small"


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AsyncClient("127.0.0.1:1", max_message_bytes=0)
