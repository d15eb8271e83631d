"""A restarted server keeps its SQLite sessions; PING/PONG; GetServerStats after a known sequence of requests."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from integration_api import AsyncClient
from integration_api.proto import integration_api_pb2 as pb
from tests.fake_clock import FakeClock
from tests.grpc_helpers import chat_request
from tests.sessions.conftest import SessionGateway, start, stop, turn


async def test_a_restarted_server_keeps_its_sqlite_sessions(tmp_path: Path, clock: FakeClock) -> None:
    first = await start(tmp_path, clock, None)
    try:
        session = await first.create("Be brief.")
        stream = first.open_stream()
        await stream.send(turn("t1", "one two three", session.sessionId))
        await stream.read_until_done(["t1"])
    finally:
        await stop(first)

    second = await start(tmp_path, clock, None)  # the same data directory, a new process's worth of state
    try:
        stream = second.open_stream()
        await stream.send(turn("t2", "four", session.sessionId))
        reply = (await stream.read_until_done(["t2"])).terminal("t2")
        assert reply.success and reply.usage.inputTokens == 2 + 3 + 3 + 1
        assert (await second.info(session.sessionId)).requestCount == 2
    finally:
        await stop(second)


async def test_ping_is_answered_by_one_pong_that_is_no_terminal_frame(gateway: SessionGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(chat_request("busy", "a b c d e", provider="simulated", simulated_delay_ms=20))
    await stream.send(pb.ChatRequest(requestId="p1", action=pb.REQUEST_ACTION_PING))
    collected = await stream.read_until_done(["busy"])
    while not collected.frames["p1"]:
        collected.add(await stream.call.read())
    (pong,) = collected.frames["p1"]
    assert pong.pong and pong.success and pong.code == 200 and not pong.final and not pong.metrics
    assert not any(frame.pong for frame in collected.frames["busy"])
    assert collected.terminal("busy").success  # the request in flight was not disturbed


async def test_the_python_client_pings_its_stream(gateway: SessionGateway) -> None:
    target = f"127.0.0.1:{gateway.running.server.port}"
    async with AsyncClient(target, api_key=gateway.running.api_key) as client, client.stream("simulated") as stream:
        assert await stream.ping() > 0
        reply = stream.chat([{"role": "user", "content": "after the ping"}])
        assert await reply.text() == "after the ping"
        assert await stream.ping() > 0


async def test_server_stats_after_a_known_sequence(gateway: SessionGateway) -> None:
    session = await gateway.create()
    stream = gateway.open_stream()
    await stream.send(
        chat_request("ok1", "one two", provider="simulated"),
        turn("ok2", "three", session.sessionId),
        chat_request("bad", "x", provider="simulated", simulated_error=400),
        chat_request("probe1", provider="probe"),
    )
    await stream.read_until_done(["ok1", "ok2", "bad", "probe1"])
    stats = await gateway.sessions.GetServerStats(pb.GetServerStatsRequest(), metadata=gateway.metadata)

    assert (stats.requestsTotal, stats.requestsSucceeded, stats.requestsFailed) == (4, 3, 1)
    assert (stats.activeStreams, stats.inflightRequests) == (1, 0)
    assert (stats.sessionsCreated, stats.sessionsActive) == (1, 1)
    assert stats.uptimeSeconds > 0
    assert stats.totalTime.count == 4 and stats.timeToFirstToken.count == 3  # "bad" failed before any output
    assert 0 < stats.totalTime.p50Ms <= stats.totalTime.p95Ms
    # Each succeeded request's first token came before its end (the averages cover different requests: not those).
    assert 0 < stats.timeToFirstToken.p50Ms <= stats.timeToFirstToken.p95Ms
    by_name = {p.provider: p for p in stats.providers}
    assert set(by_name) == {"probe", "simulated"}
    assert (by_name["simulated"].requestsTotal, by_name["simulated"].requestsFailed) == (3, 1)
    assert by_name["probe"].requestsSucceeded == 1

    await stream.call.done_writing()
    await stream.read_to_end()
    after = await gateway.sessions.GetServerStats(pb.GetServerStatsRequest(), metadata=gateway.metadata)
    assert after.activeStreams == 0


async def test_in_flight_requests_and_a_cancel_counted(gateway: SessionGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(chat_request("slow", "a b c d e f", provider="simulated", simulated_delay_ms=100))
    while not stream.collected.text("slow"):
        stream.collected.add(await stream.call.read())
    during = await gateway.sessions.GetServerStats(pb.GetServerStatsRequest(), metadata=gateway.metadata)
    assert during.inflightRequests == 1 and during.requestsTotal == 1
    await stream.send(pb.ChatRequest(requestId="slow", action=pb.REQUEST_ACTION_CANCEL))
    await stream.read_until_done(["slow"])
    after = await gateway.sessions.GetServerStats(pb.GetServerStatsRequest(), metadata=gateway.metadata)
    assert (after.inflightRequests, after.requestsFailed, after.requestsSucceeded) == (0, 1, 0)


async def test_session_service_needs_authentication(gateway: SessionGateway) -> None:
    for call in (
        gateway.sessions.GetServerStats(pb.GetServerStatsRequest()),
        gateway.sessions.CreateSession(pb.CreateSessionRequest()),
        gateway.sessions.ListSessions(pb.ListSessionsRequest(), metadata=(("x-api-key", "ia_bad_key"),)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_create_session_refuses_an_unknown_provider(gateway: SessionGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.create(provider="nonsense")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
