"""AsyncClient streams against a real gateway: typed events, concurrency on one stream, cancel, typed errors."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from integration_api.client import (
    AsyncClient,
    BadRequestError,
    ChatResult,
    Credential,
    RateLimitError,
    RequestCancelledError,
    ServiceUnavailableError,
    StreamClosedError,
    TextDelta,
    ToolCallDelta,
)
from tests.client.conftest import PROBE, SIM, user
from tests.conftest import RunningGateway


async def test_events_are_typed_and_end_with_the_result(client: AsyncClient) -> None:
    async with client.stream(SIM) as stream:
        events = [event async for event in stream.chat(user("hello there world"), model="sim-1", request_id="r1")]
    deltas, result = events[:-1], events[-1]
    assert all(isinstance(event, TextDelta) and event.request_id == "r1" for event in deltas)
    assert "".join(event.text for event in deltas if isinstance(event, TextDelta)) == "hello there world"
    assert isinstance(result, ChatResult) and result.text == "hello there world"
    assert result.finish_reason == "stop" and result.request_id == "r1" and result.provider_request_id == "sim-r1"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (3, 3, 6)
    assert result.timings.total_ms > 0 and result.timings.first_token_ms is not None


async def test_many_concurrent_requests_share_one_stream(client: AsyncClient, gateway: RunningGateway) -> None:
    arrivals: list[str] = []

    async def converse(stream_: object, n: int) -> str:
        response = stream.chat(user(" ".join(f"c{n}w{w}" for w in range(6))), parameters={"simulated_delay_ms": 3})
        async for event in response:
            arrivals.append(event.request_id)
        return await response.text()

    async with client.stream(PROBE) as stream:
        texts = await asyncio.gather(*(converse(stream, n) for n in range(12)))
    assert texts == [" ".join(f"c{n}w{w}" for w in range(6)) for n in range(12)]
    assert sum(1 for a, b in itertools.pairwise(arrivals) if a != b) > 12, "frames should interleave"
    assert gateway.probe.peak_active > 1


async def test_convenience_text_result_and_text_stream(client: AsyncClient) -> None:
    async with client.stream(SIM, credential=Credential.of(key="k"), model="m") as stream:
        assert await stream.chat(user("one two")).text() == "one two"
        assert (await stream.chat(user("three")).result()).finish_reason == "stop"
        assert [text async for text in stream.chat(user("four five six")).text_stream] == ["four ", "five ", "six"]


async def test_streamed_tool_calls_are_reassembled(client: AsyncClient) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]
    tool = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    async with client.stream(SIM) as stream:
        response = stream.chat(
            user("weather?"),
            tools=[tool],
            parameters={"simulated_reply": "", "simulated_tool_calls": json.dumps(calls)},
        )
        events = [event async for event in response]
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert {delta.index for delta in deltas} == {0, 1} and deltas[0].name == "get_weather"
    result = events[-1]
    assert isinstance(result, ChatResult) and result.finish_reason == "tool_calls"
    assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]


async def test_cancel_stops_the_request_on_the_server(client: AsyncClient, gateway: RunningGateway) -> None:
    async with client.stream(PROBE) as stream:
        slow = stream.chat(user(" ".join(["w"] * 200)), parameters={"simulated_delay_ms": 10}, request_id="slow")
        other = stream.chat(user("quick one"), parameters={"simulated_delay_ms": 5})
        await anext(aiter(slow))
        slow.cancel()
        with pytest.raises(RequestCancelledError) as caught:
            await slow.result()
        assert caught.value.request_id == "slow" and caught.value.status == "CANCELLED"
        assert await other.text() == "quick one"
    await gateway.probe.wait_for(lambda: "slow" in gateway.probe.closed)
    assert "slow" not in gateway.probe.finished


async def test_breaking_out_of_the_iteration_cancels(client: AsyncClient, gateway: RunningGateway) -> None:
    async with client.stream(PROBE) as stream:
        async for _event in stream.chat(
            user(" ".join(["w"] * 200)), parameters={"simulated_delay_ms": 10}, request_id="b"
        ):
            break
        await gateway.probe.wait_for(lambda: "b" in gateway.probe.closed)
        async with stream.chat(user(" ".join(["w"] * 200)), parameters={"simulated_delay_ms": 10}, request_id="c") as r:
            await anext(aiter(r))
        await gateway.probe.wait_for(lambda: "c" in gateway.probe.closed)
        assert await stream.chat(user("still fine")).text() == "still fine"
    assert gateway.probe.finished.count("b") == gateway.probe.finished.count("c") == 0


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [(429, RateLimitError, True), (400, BadRequestError, False), (503, ServiceUnavailableError, True)],
)
async def test_error_frames_raise_typed_errors(
    client: AsyncClient, status: int, error_type: type[Exception], retryable: bool
) -> None:
    async with client.stream(SIM) as stream:
        failing = stream.chat(user("a b c"), parameters={"simulated_error": status, "simulated_error_after": 1})
        seen: list[str] = []
        with pytest.raises(error_type) as caught:
            async for event in failing:
                seen.append(getattr(event, "text", ""))
        assert seen == ["a "]
        error = caught.value
        assert error.code == status and error.retryable is retryable  # type: ignore[attr-defined]
        assert error.request_id == failing.request_id and error.message  # type: ignore[attr-defined]
        assert await stream.chat(user("the stream survives")).text() == "the stream survives"


async def test_unknown_provider_is_a_bad_request(client: AsyncClient) -> None:
    async with client.stream("no-such-provider") as stream:
        with pytest.raises(BadRequestError, match="no-such-provider"):
            await stream.chat(user("hi")).text()


async def test_request_ids_must_be_unique_while_in_flight(client: AsyncClient) -> None:
    async with client.stream(SIM) as stream:
        first = stream.chat(user("a b"), parameters={"simulated_delay_ms": 20}, request_id="same")
        with pytest.raises(ValueError, match="already in flight"):
            stream.chat(user("c"), request_id="same")
        assert await first.text() == "a b"
        assert await stream.chat(user("c"), request_id="same").text() == "c"


async def test_closing_the_stream_fails_requests_still_in_flight(client: AsyncClient) -> None:
    stream = client.stream(SIM)
    pending = stream.chat(user(" ".join(["w"] * 100)), parameters={"simulated_delay_ms": 20})
    await stream.aclose()
    with pytest.raises(StreamClosedError):
        await pending.text()
    with pytest.raises(StreamClosedError):
        stream.chat(user("too late"))


async def test_closing_the_client_closes_its_streams(gateway: RunningGateway) -> None:
    from tests.client.conftest import async_client_for

    client = async_client_for(gateway)
    stream = client.stream(SIM)
    pending = stream.chat(user(" ".join(["w"] * 100)), parameters={"simulated_delay_ms": 20})
    await client.aclose()
    with pytest.raises(StreamClosedError):
        await pending.text()
    with pytest.raises(StreamClosedError):
        client.stream()
