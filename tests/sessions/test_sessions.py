"""Sessions through a real gRPC server, on both stores (every test here runs on SQLite and on Redis).

The simulated provider's input usage is the word count of every message it was sent, so it shows the context a
request carried: system prompt + history + the new message.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from integration_api.proto import integration_api_pb2 as pb
from tests.fake_clock import FakeClock
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request, user
from tests.sessions.conftest import SessionGateway, start, stop, turn


async def one_turn(stream: StreamDriver, request: pb.ChatRequest) -> pb.ChatResponse:
    await stream.send(request)
    collected = await stream.read_until_done([request.requestId])
    return collected.terminal(request.requestId)


async def test_history_is_kept_and_sent_with_every_turn(gateway: SessionGateway) -> None:
    session = await gateway.create("Be brief.")  # 2 words
    assert session.sessionId.startswith("sess_") and session.provider == "simulated"
    stream = gateway.open_stream()

    first = await one_turn(stream, turn("t1", "one two three", session.sessionId))
    assert first.success and "".join(first.data.assistant.contents) == "one two three"
    assert first.usage.inputTokens == 2 + 3
    second = await one_turn(stream, turn("t2", "four five", session.sessionId))
    assert "".join(second.data.assistant.contents) == "four five"
    assert second.usage.inputTokens == 2 + 3 + 3 + 2  # the system prompt, the first turn, the new message
    third = await one_turn(stream, turn("t3", "six", session.sessionId))
    assert third.usage.inputTokens == 2 + 3 + 3 + 2 + 2 + 1

    info = await gateway.info(session.sessionId)
    assert [m.role for m in info.messages] == ["user", "assistant"] * 3
    assert [m.user.content or "".join(m.assistant.contents) for m in info.messages][:2] == ["one two three"] * 2
    assert (info.messageCount, info.requestCount, info.trimmedMessages) == (6, 3, 0)
    assert info.inputTokens == 5 + 10 + 13 and info.outputTokens == 3 + 2 + 1
    assert info.lastUsedAtMs == info.createdAtMs == int(gateway.clock.now * 1000)


async def test_unary_chat_continues_the_same_session(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    await one_turn(stream, turn("t1", "alpha beta", session.sessionId))
    reply = await gateway.running.unified.Chat(turn("u1", "gamma", session.sessionId), metadata=gateway.metadata)
    assert reply.success and reply.usage.inputTokens == 2 + 2 + 1
    assert (await gateway.info(session.sessionId)).messageCount == 4


async def test_session_parameters_are_the_defaults_and_the_request_wins(gateway: SessionGateway) -> None:
    session = await gateway.create(simulated_reply="from the session")
    assert session.modelParameters["model.simulated_reply"].value
    stream = gateway.open_stream()
    assert "".join((await one_turn(stream, turn("t1", "x", session.sessionId))).data.assistant.contents) == (
        "from the session"
    )
    own = await one_turn(stream, turn("t2", "x", session.sessionId, simulated_reply="from the request"))
    assert "".join(own.data.assistant.contents) == "from the request"


@pytest.mark.parametrize(
    "params", [{"simulated_error": 400}, {"simulated_error": 400, "simulated_error_after": 2}], ids=["at-once", "mid"]
)
async def test_a_failed_turn_leaves_no_trace(gateway: SessionGateway, params: dict[str, int]) -> None:
    session = await gateway.create("Sys.")
    stream = gateway.open_stream()
    await one_turn(stream, turn("ok1", "one two", session.sessionId))
    failed = await one_turn(stream, turn("bad", "three four five", session.sessionId, **params))
    assert not failed.success and failed.error.status == "INVALID_ARGUMENT"

    info = await gateway.info(session.sessionId)
    assert (info.messageCount, info.requestCount) == (2, 1)
    after = await one_turn(stream, turn("ok2", "six", session.sessionId))
    assert after.usage.inputTokens == 1 + 2 + 2 + 1  # no trace of "three four five" nor of its partial reply


async def test_a_cancelled_turn_leaves_no_trace(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    await one_turn(stream, turn("ok1", "one two", session.sessionId))
    await stream.send(turn("slow", "a b c d e f g h", session.sessionId, simulated_delay_ms=200))
    while not stream.collected.text("slow"):  # its first delta: the request is at the provider
        stream.collected.add(await stream.call.read())
    await stream.send(cancel_request("slow"))
    cancelled = (await stream.read_until_done(["slow"])).terminal("slow")
    assert cancelled.error.status == "CANCELLED"

    assert (await gateway.info(session.sessionId)).messageCount == 2
    after = await one_turn(stream, turn("ok2", "three", session.sessionId))
    assert after.usage.inputTokens == 2 + 2 + 1


async def test_tool_calls_and_tool_results_are_turns(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    calls = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    asked = await one_turn(stream, turn("t1", "weather in Paris", session.sessionId, simulated_tool_calls=calls))
    assert asked.finishReason == "tool_calls"
    call = asked.data.assistant.toolCalls[0]

    result = pb.Message(role="tool", tool=pb.ToolMessage(tools=[pb.ToolMessage.Tool(
        name="get_weather", id=call.id, content="sunny and warm"
    )]))  # fmt: skip
    answer = chat_request("t2", provider="simulated", messages=[result], simulated_reply="It is sunny.")
    answer.sessionId = session.sessionId
    final = await one_turn(stream, answer)
    assert final.success
    assert final.usage.inputTokens == 3 + 0 + 3  # the question, the tool call (no text), the tool result

    info = await gateway.info(session.sessionId)
    assert [m.role for m in info.messages] == ["user", "assistant", "tool", "assistant"]
    kept = info.messages[1].assistant.toolCalls[0]
    assert (kept.id, kept.function.name, json.loads(kept.function.arguments)) == (
        call.id,
        "get_weather",
        {"city": "Paris"},
    )
    assert info.messages[2].tool.tools[0].content == "sunny and warm"
    assert "".join(info.messages[3].assistant.contents) == "It is sunny."


async def test_a_session_request_with_a_full_history_is_invalid(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    history = [pb.Message(role="system", system=pb.SystemMessage(content="x")), user("hi")]
    request = chat_request("full", provider="simulated", messages=history)
    request.sessionId = session.sessionId
    refused = await one_turn(stream, request)
    assert refused.error.status == "INVALID_ARGUMENT" and "conversations[0]" in refused.error.errorMessage
    assistant = pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=["earlier"]))
    request = chat_request("full2", provider="simulated", messages=[user("a"), assistant, user("b")])
    request.sessionId = session.sessionId
    assert (await one_turn(stream, request)).error.status == "INVALID_ARGUMENT"
    assert (await gateway.info(session.sessionId)).messageCount == 0


async def test_a_session_on_another_providers_service_fails_its_precondition(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    request = chat_request("elsewhere", provider="probe")
    request.sessionId = session.sessionId
    refused = await one_turn(stream, request)
    assert refused.code == 400 and refused.error.status == "FAILED_PRECONDITION"
    assert "simulated" in refused.error.errorMessage
    assert (await one_turn(stream, turn("here", "still fine", session.sessionId))).success


async def test_unknown_and_expired_sessions_are_not_found_and_the_stream_goes_on(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    unknown = await one_turn(stream, turn("nope", "hi", "sess_does-not-exist"))
    assert unknown.code == 404 and unknown.error.status == "NOT_FOUND"

    await one_turn(stream, turn("used", "hi", session.sessionId))
    ttl = gateway.running.server.settings.session_ttl_s
    gateway.clock.now += ttl - 1  # idle for less than the TTL: still there
    assert (await one_turn(stream, turn("still", "hi", session.sessionId))).success
    gateway.clock.now += ttl  # idle for the TTL since that last use
    expired = await one_turn(stream, turn("late", "hi", session.sessionId))
    assert expired.error.status == "NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.info(session.sessionId)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await gateway.sessions.ListSessions(pb.ListSessionsRequest(), metadata=gateway.metadata)
    assert session.sessionId not in [s.sessionId for s in listed.sessions]
    assert (await one_turn(stream, chat_request("plain", "no session", provider="simulated"))).success


async def test_another_projects_session_is_not_found_exactly_like_a_missing_one(gateway: SessionGateway) -> None:
    mine = await gateway.create("Mine.")
    other = gateway.other_project_metadata()
    theirs = await gateway.create("Theirs.", metadata=other)

    async def refusals(session_id: str) -> list[object]:
        stream = gateway.open_stream(other)
        frame = await one_turn(stream, turn("r", "hi", session_id))
        answers: list[object] = [frame.code, frame.error.status]
        for call in (
            gateway.sessions.GetSessionInfo(pb.GetSessionInfoRequest(sessionId=session_id), metadata=other),
            gateway.sessions.DeleteSession(pb.DeleteSessionRequest(sessionId=session_id), metadata=other),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            answers.append(caught.value.code())
        return answers

    foreign = await refusals(mine.sessionId)
    assert foreign == await refusals("sess_" + "x" * len(mine.sessionId[5:]))  # the same as a missing session
    assert foreign == [404, "NOT_FOUND", grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND]

    listed = await gateway.sessions.ListSessions(pb.ListSessionsRequest(), metadata=other)
    assert [s.sessionId for s in listed.sessions] == [theirs.sessionId]
    assert (await gateway.info(mine.sessionId)).systemPrompt == "Mine."  # untouched by the other project's tries
    assert (await gateway.info(theirs.sessionId, metadata=other)).organizationId == "org-2"


async def test_list_and_delete(gateway: SessionGateway) -> None:
    first = await gateway.create("first")
    gateway.clock.now += 1
    second = await gateway.create("second")
    listed = await gateway.sessions.ListSessions(pb.ListSessionsRequest(), metadata=gateway.metadata)
    assert [s.sessionId for s in listed.sessions] == [second.sessionId, first.sessionId]  # most recent first
    assert not listed.sessions[0].messages
    await gateway.sessions.DeleteSession(pb.DeleteSessionRequest(sessionId=first.sessionId), metadata=gateway.metadata)
    listed = await gateway.sessions.ListSessions(pb.ListSessionsRequest(limit=5), metadata=gateway.metadata)
    assert [s.sessionId for s in listed.sessions] == [second.sessionId]
    stream = gateway.open_stream()
    assert (await one_turn(stream, turn("gone", "hi", first.sessionId))).error.status == "NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.sessions.DeleteSession(
            pb.DeleteSessionRequest(sessionId=first.sessionId), metadata=gateway.metadata
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_requests_on_one_session_run_one_after_the_other(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    # The first is slow; the second, sent at once, must wait for it and carry its turn.
    await stream.send(turn("first", "one two three four", session.sessionId, simulated_delay_ms=50))
    await stream.send(turn("second", "five", session.sessionId))
    collected = await stream.read_until_done(["first", "second"])
    first, second = collected.terminal("first"), collected.terminal("second")
    assert first.success, first
    assert second.usage.inputTokens == 4 + 4 + 1
    order = [f.requestId for f in collected.order]
    assert order.index("second") > order.index("first") + 4  # every frame of the first came before the second's
    info = await gateway.info(session.sessionId)
    assert [m.user.content for m in info.messages if m.role == "user"] == ["one two three four", "five"]


async def test_different_sessions_on_one_stream_run_concurrently(gateway: SessionGateway) -> None:
    slow, quick = await gateway.create(), await gateway.create()
    stream = gateway.open_stream()
    await stream.send(turn("slow", "a b c d e f g h i j", slow.sessionId, simulated_delay_ms=100))
    while not stream.collected.text("slow"):  # the slow one holds its session now
        stream.collected.add(await stream.call.read())
    await stream.send(turn("quick", "hello", quick.sessionId))
    while not stream.collected.terminals("quick"):
        stream.collected.add(await stream.call.read())
    assert not stream.collected.terminals("slow")  # the quick one did not wait for the other session
    assert stream.collected.terminal("quick").success
    await stream.send(cancel_request("slow"))
    await stream.read_until_done(["slow"])


async def test_a_session_busy_beyond_the_lock_timeout_is_refused(
    tmp_path: Path, clock: FakeClock, redis_url: str | None
) -> None:
    gateway = await start(tmp_path, clock, redis_url, session_lock_timeout_s=0.05)
    try:
        session = await gateway.create()
        stream = gateway.open_stream()
        await stream.send(turn("holder", "a b c d e f g h", session.sessionId, simulated_delay_ms=1000))
        while not stream.collected.text("holder"):
            stream.collected.add(await stream.call.read())
        await stream.send(turn("waiter", "hi", session.sessionId))
        while not stream.collected.terminals("waiter"):
            stream.collected.add(await stream.call.read())
        refused = stream.collected.terminal("waiter")
        assert refused.code == 429 and refused.error.status == "RESOURCE_EXHAUSTED" and refused.error.retryable
        assert refused.error.retryAfterMs == 1000
        await stream.send(cancel_request("holder"))
        await stream.read_until_done(["holder"])
    finally:
        await stop(gateway)


async def test_trimmed_by_message_count_oldest_first(tmp_path: Path, clock: FakeClock, redis_url: str | None) -> None:
    gateway = await start(tmp_path, clock, redis_url, session_max_messages=4)
    try:
        session = await gateway.create("System prompt.")
        stream = gateway.open_stream()
        for number, text in enumerate(["one", "two two", "three three three"]):
            await one_turn(stream, turn(f"t{number}", text, session.sessionId))
        info = await gateway.info(session.sessionId)
        assert [m.user.content for m in info.messages if m.role == "user"] == ["two two", "three three three"]
        assert (info.messageCount, info.trimmedMessages, info.systemPrompt) == (4, 2, "System prompt.")
        last = await one_turn(stream, turn("t4", "four", session.sessionId))
        assert last.usage.inputTokens == 2 + (2 + 2) + (3 + 3) + 1  # the system prompt is always sent
    finally:
        await stop(gateway)


async def test_trimmed_by_approximate_tokens(tmp_path: Path, clock: FakeClock, redis_url: str | None) -> None:
    gateway = await start(tmp_path, clock, redis_url, session_max_tokens=10)  # 40 characters
    try:
        session = await gateway.create()
        stream = gateway.open_stream()
        await one_turn(stream, turn("t1", "a" * 12, session.sessionId))  # 3 tokens, and 3 for its echo
        await one_turn(stream, turn("t2", "b" * 8, session.sessionId))  # 2 + 2: 10 in all, at the limit
        info = await gateway.info(session.sessionId)
        assert (info.messageCount, info.trimmedMessages) == (4, 0)
        await one_turn(stream, turn("t3", "c" * 4, session.sessionId))  # 1 + 1 more: the first turn goes
        info = await gateway.info(session.sessionId)
        assert [m.user.content for m in info.messages if m.role == "user"] == ["b" * 8, "c" * 4]
        assert info.trimmedMessages == 2
    finally:
        await stop(gateway)


async def test_a_turn_from_a_stale_copy_is_aborted_and_the_next_reads_the_store(
    tmp_path: Path, clock: FakeClock, redis_url: str | None
) -> None:
    """Two servers on one store (replicas): each starts a turn from the copy it last wrote, so a turn that the
    other server moved past is ABORTED and not kept, and the turn after it starts from what the store has."""
    a = await start(tmp_path, clock, redis_url)
    b = await start(tmp_path, clock, redis_url)
    try:
        session = await a.create()
        on_a, on_b = a.open_stream(), b.open_stream()
        assert (await one_turn(on_a, turn("a1", "one", session.sessionId))).success
        assert (await one_turn(on_b, turn("b1", "two", session.sessionId))).usage.inputTokens == 1 + 1 + 1

        stale = await one_turn(on_a, turn("a2", "three", session.sessionId))
        assert not stale.success and stale.error.status == "ABORTED" and stale.error.retryable
        again = await one_turn(on_a, turn("a3", "three", session.sessionId))
        assert again.success and again.usage.inputTokens == 1 + 1 + 1 + 1 + 1  # both servers' turns, then this
        assert (await a.info(session.sessionId)).messageCount == 6

        await b.sessions.DeleteSession(pb.DeleteSessionRequest(sessionId=session.sessionId), metadata=b.metadata)
        deleted = await one_turn(on_a, turn("a4", "four", session.sessionId))
        assert deleted.error.status == "ABORTED"
        gone = await one_turn(on_a, turn("a5", "four", session.sessionId))
        assert gone.error.status == "NOT_FOUND"
    finally:
        await stop(a)
        await stop(b)
