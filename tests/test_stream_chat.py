"""StreamChat through a real server and channel: sequencing, concurrency, failures, cancellation, EOF."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import orjson
import pytest

from integration_api.proto import integration_api_pb2 as pb
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import cancel_request, chat_request, credential, metrics

PROBE = "probe"


async def test_many_sequential_requests_on_one_stream(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    for n in range(20):
        rid = f"seq-{n}"
        await stream.send(chat_request(rid, f"message number {n}", provider=PROBE))
        collected = await stream.read_until_done([rid])
        assert collected.text(rid) == f"message number {n}"
        final = collected.terminal(rid)
        assert final.success and final.finishReason == "stop"
        assert "".join(final.data.assistant.contents) == f"message number {n}"
        values = metrics(final)
        assert values["INPUT_TOKEN"] == "3" and values["OUTPUT_TOKEN"] == "3" and values["TOTAL_TOKEN"] == "6"
        assert values["STATUS"] == "SUCCESS" and int(values["TIME_TAKEN"]) > 0
        assert int(values["FIRST_TOKEN_RECIEVED_TIME"]) > 0 and values["LLM_REQUEST_ID"] == f"sim-{rid}"
        assert final.usage.totalTokens == 6
    await stream.call.done_writing()
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_overlapping_requests_interleave_and_reassemble(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    ids = [f"overlap-{n}" for n in range(10)]
    texts = {rid: " ".join(f"{rid}-word{w}" for w in range(8)) for rid in ids}
    await stream.send(*(chat_request(rid, texts[rid], provider=PROBE, simulated_delay_ms=5) for rid in ids))
    collected = await stream.read_until_done(ids)
    for rid in ids:
        assert collected.text(rid) == texts[rid]
        assert "".join(collected.terminal(rid).data.assistant.contents) == texts[rid]
    order = [frame.requestId for frame in collected.order]
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches > len(ids), "frames of concurrent requests should interleave"
    assert gateway.probe.peak_active > 1


async def test_one_failing_request_leaves_the_others_and_the_stream_alone(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    ids = [f"mixed-{n}" for n in range(5)]
    requests = [chat_request(rid, "all good here", provider=PROBE, simulated_delay_ms=2) for rid in ids]
    requests[2] = chat_request(ids[2], "this fails", provider=PROBE, simulated_error=400, simulated_error_after=1)
    await stream.send(*requests)
    collected = await stream.read_until_done(ids)
    failed = collected.terminal(ids[2])
    assert not failed.success and failed.code == 400 and failed.error.status == "INVALID_ARGUMENT"
    assert failed.error.errorCode == 400 and failed.error.errorMessage and failed.error.humanMessage
    assert metrics(failed)["STATUS"] == "FAILED" and failed.finishReason == "error"
    assert collected.text(ids[2]) == "this "  # the delta sent before the failure is kept
    for rid in ids[:2] + ids[3:]:
        assert collected.terminal(rid).success and collected.text(rid) == "all good here"
    await stream.send(chat_request("after", "still open", provider=PROBE))
    assert (await stream.read_until_done(["after"])).text("after") == "still open"


async def test_cancel_one_request(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    slow = chat_request("slow", " ".join(["w"] * 200), provider=PROBE, simulated_delay_ms=20)
    other = chat_request("other", "quick one", provider=PROBE, simulated_delay_ms=5)
    await stream.send(slow, other)
    first = await stream.call.read()
    assert first.requestId in ("slow", "other")
    await stream.send(cancel_request("slow"))
    collected = await stream.read_until_done(["slow", "other"])
    cancelled = collected.terminal("slow")
    assert cancelled.error.status == "CANCELLED" and cancelled.finishReason == "cancelled"
    assert collected.terminal("other").success
    await gateway.probe.wait_for(lambda: "slow" in gateway.probe.closed)
    assert "slow" not in gateway.probe.finished


async def test_cancel_of_unknown_request_is_ignored(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(cancel_request("never-sent"), chat_request("real", "fine", provider=PROBE))
    collected = await stream.read_until_done(["real"])
    assert collected.terminal("real").success and not collected.frames["never-sent"]


async def test_dropping_the_stream_stops_provider_calls(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    ids = ["drop-1", "drop-2"]
    await stream.send(*(chat_request(rid, " ".join(["w"] * 500), provider=PROBE, simulated_delay_ms=10) for rid in ids))
    await stream.call.read()
    stream.call.cancel()
    await gateway.probe.wait_for(lambda: all(rid in gateway.probe.closed for rid in ids))
    assert gateway.probe.active == 0 and not gateway.probe.finished


async def test_half_close_lets_in_flight_requests_complete(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    ids = [f"eof-{n}" for n in range(3)]
    await stream.send(*(chat_request(rid, "one two three four", provider=PROBE, simulated_delay_ms=20) for rid in ids))
    await stream.call.done_writing()
    collected = await stream.read_to_end()
    for rid in ids:
        assert collected.terminal(rid).success and collected.text(rid) == "one two three four"
    assert await stream.call.code() == grpc.StatusCode.OK


async def test_duplicate_in_flight_id_is_refused_without_a_second_terminal_frame(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(
        chat_request("dup", "first one here", provider=PROBE, simulated_delay_ms=30),
        chat_request("dup", "second", provider=PROBE),
    )
    await stream.call.done_writing()
    collected = await stream.read_to_end()
    frames = collected.frames["dup"]
    refusals = [f for f in frames if f.error.status == "ALREADY_EXISTS"]
    assert len(refusals) == 1
    refusal = refusals[0]
    assert refusal.code == 409 and not refusal.success and not refusal.final and not refusal.metrics
    # The in-flight request keeps its one terminal frame, the only frame with metrics for this id.
    terminal = collected.terminal("dup")
    assert terminal.success and "".join(terminal.data.assistant.contents) == "first one here"
    assert [f for f in frames if f.metrics] == [terminal]


async def test_requests_beyond_the_per_stream_limit_wait(tmp_path: object) -> None:
    running = await start_gateway(make_settings(tmp_path, max_inflight_per_stream=2))  # type: ignore[arg-type]
    try:
        stream = running.open_stream()
        ids = [f"limit-{n}" for n in range(6)]
        await stream.send(*(chat_request(rid, "a b c d", provider=PROBE, simulated_delay_ms=10) for rid in ids))
        collected = await stream.read_until_done(ids)
        assert all(collected.terminal(rid).success for rid in ids)
        assert running.probe.peak_active == 2
    finally:
        await running.channel.close()
        await running.server.stop()


async def test_streamed_parallel_tool_calls(gateway: RunningGateway) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "CET"}}]
    stream = gateway.open_stream()
    await stream.send(
        chat_request(
            "tools", "weather?", provider=PROBE, simulated_reply="", simulated_tool_calls=orjson.dumps(calls).decode()
        )
    )
    collected = await stream.read_until_done(["tools"])
    deltas = [f.data.assistant.toolCalls[0] for f in collected.frames["tools"] if not f.final]
    assert {d.index for d in deltas} == {0, 1} and len(deltas) == 4
    final = collected.terminal("tools")
    assert final.finishReason == "tool_calls"
    assembled = {c.index: (c.function.name, orjson.loads(c.function.arguments)) for c in final.data.assistant.toolCalls}
    assert assembled == {0: ("get_weather", {"city": "Paris"}), 1: ("get_time", {"tz": "CET"})}
    assert all(c.id for c in final.data.assistant.toolCalls)


async def test_retryable_error_before_output_is_retried(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(chat_request("retry", "x y", provider=PROBE, simulated_error=503))
    failed = (await stream.read_until_done(["retry"])).terminal("retry")
    assert failed.error.status == "UNAVAILABLE" and failed.error.retryable
    assert gateway.probe.started.count("retry") == gateway.server.settings.retry_max_attempts


async def test_no_retry_after_output_reached_the_client(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(chat_request("late", "a b c d", provider=PROBE, simulated_error=503, simulated_error_after=2))
    collected = await stream.read_until_done(["late"])
    assert collected.text("late") == "a b " and collected.terminal("late").error.status == "UNAVAILABLE"
    assert gateway.probe.started.count("late") == 1


async def test_each_request_uses_its_own_credential(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(
        chat_request("c1", "hi", provider=PROBE, cred=credential(key="first")),
        chat_request("c2", "hi", provider=PROBE, cred=credential(key="second")),
    )
    await stream.read_until_done(["c1", "c2"])
    assert sorted(c["key"] for c in gateway.probe.credentials) == ["first", "second"]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (pb.ChatRequest(conversations=[pb.Message(role="user", user=pb.UserMessage(content="x"))]), "requestId"),
        (pb.ChatRequest(requestId="bad"), "conversations is empty"),
        (
            pb.ChatRequest(
                requestId="bad", conversations=[pb.Message(role="wizard", user=pb.UserMessage(content="x"))]
            ),
            "unknown role",
        ),
        (pb.ChatRequest(requestId="bad", conversations=[pb.Message(role="user")]), "no content"),
        (
            pb.ChatRequest(
                requestId="bad", conversations=[pb.Message(role="user", system=pb.SystemMessage(content="x"))]
            ),
            "carries a system",
        ),
        (
            pb.ChatRequest(requestId="bad", conversations=[pb.Message(role="tool", tool=pb.ToolMessage())]),
            "without any tool result",
        ),
        (
            pb.ChatRequest(
                requestId="bad",
                conversations=[pb.Message(user=pb.UserMessage(content="x"))],
                toolDefinitions=[pb.ToolDefinition(type="function")],
            ),
            "functionDefinition",
        ),
    ],
    ids=["no-id", "no-messages", "unknown-role", "empty-message", "role-mismatch", "empty-tool", "nameless-tool"],
)
async def test_malformed_requests_get_their_own_error_frame(
    gateway: RunningGateway, request_: pb.ChatRequest, expected: str
) -> None:
    stream = gateway.open_stream()
    request_.providerName = PROBE
    await stream.send(request_, chat_request("good", "fine", provider=PROBE))
    collected = await stream.read_until_done([request_.requestId, "good"])
    error = collected.terminal(request_.requestId)
    assert not error.success and error.code == 400 and error.error.status == "INVALID_ARGUMENT"
    assert expected in error.error.errorMessage
    assert collected.terminal("good").success


async def test_unpackable_and_unsupported_parameters(gateway: RunningGateway) -> None:
    garbage = chat_request("garbage", provider=PROBE)
    garbage.modelParameters["model.temperature"].type_url = "type.googleapis.com/google.protobuf.Value"
    garbage.modelParameters["model.temperature"].value = b"\xff\xff\xff"
    foreign = chat_request("foreign", provider=PROBE)
    foreign.modelParameters["model.temperature"].Pack(pb.Metric(name="not a value"))
    unknown = chat_request("unknown", provider=PROBE, no_such_knob=1)
    wrong_type = chat_request("wrong-type", provider=PROBE, simulated_delay_ms="soon")
    no_provider = chat_request("no-provider", provider="nonexistent")
    stream = gateway.open_stream()
    await stream.send(garbage, foreign, unknown, wrong_type, no_provider)
    ids = ["garbage", "foreign", "unknown", "wrong-type", "no-provider"]
    collected = await stream.read_until_done(ids)
    for rid in ids:
        assert collected.terminal(rid).error.status == "INVALID_ARGUMENT", rid
    assert "model.temperature" in collected.terminal("garbage").error.errorMessage
    assert "unsupported type" in collected.terminal("foreign").error.errorMessage
    assert "model.no_such_knob" in collected.terminal("unknown").error.errorMessage
    assert "nonexistent" in collected.terminal("no-provider").error.errorMessage


async def test_requests_wait_for_a_slow_reader_without_loss(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    text = " ".join(f"w{n}" for n in range(3000))
    await stream.send(chat_request("big", text, provider=PROBE))
    await asyncio.sleep(0.3)  # the client reads nothing for a while: the server must hold back, not drop
    collected = await stream.read_until_done(["big"], timeout=20)
    assert collected.text("big") == text
