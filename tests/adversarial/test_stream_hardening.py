"""StreamChat under hostile or careless clients: the engine's hardening (issue 10 items 2, 5, 6, 7, 9, 10).

Each test drives a real gateway over a real channel:

- an undecodable message (invalid UTF-8, a Struct nested too deep) is that request's INVALID_ARGUMENT frame, not
  the end of the stream (item 6);
- the queue of requests waiting for a slot is bounded per stream (count and bytes) and per principal across
  streams; a request beyond a bound gets one retryable RESOURCE_EXHAUSTED frame (item 5);
- no frame is larger than the message size limit: long deltas are split, and a final frame that would be too
  large becomes one 413 error frame (item 7);
- a requestId may be reused once its request has ended (item 9);
- a refused stream reaches a raw client as its own status (UNAUTHENTICATED, UNAVAILABLE), not INTERNAL, even
  when the client wrote requests before reading (item 10);
- a key revoked, or a token expired, while its stream is open ends that stream with UNAUTHENTICATED (item 2);
- every request leaves one access-log line, without secrets.

Where a request must still be running while others arrive, it is slow (a delay per word) and the test waits for
its first delta before sending the others; it stays busy long after they have been handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from auth import ApiKeyStore, Authenticator, issue_service_token
from auth.jwt_tokens import DEFAULT_LEEWAY_S
from integration_api.proto import integration_api_pb2 as pb
from integration_api.server import GatewayServer
from integration_api.settings import Settings
from providers.base import ALL_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.registry import default_registry
from providers.simulated import SimulatedProvider
from providers.types import ChatCall
from tests.conftest import JWT_SECRET, RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import Collected, StreamDriver, chat_request, credential, packed_value
from tests.probe import ProbeLog, probe_spec

PROBE = "probe"
LARGE = "large"
STREAM_CHAT = "/integration_api.UnifiedProviderService/StreamChat"
SLOW = " ".join(["slow"] * 60)  # 60 deltas at SLOW_DELAY_MS each: busy for ~1.5 s after its first delta
SLOW_DELAY_MS = 25
KIB = 1024

Metadata = tuple[tuple[str, str], ...]


# --- helpers ----------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_with(tmp_path: Path, **overrides: Any) -> AsyncIterator[RunningGateway]:
    """A gateway with these settings overrides, stopped at the end."""
    running = await start_gateway(make_settings(tmp_path, **overrides))
    try:
        yield running
    finally:
        await running.channel.close()
        await running.server.stop()


def slow_request(request_id: str) -> pb.ChatRequest:
    return chat_request(request_id, SLOW, provider=PROBE, simulated_delay_ms=SLOW_DELAY_MS)


async def read_first_delta(stream: StreamDriver, request_id: str, timeout: float = 10.0) -> None:
    """Read frames until `request_id` has sent one: it holds its slot from then on."""
    async with asyncio.timeout(timeout):
        while not stream.collected.frames[request_id]:
            frame = await stream.call.read()
            assert frame is not grpc.aio.EOF, f"stream ended before {request_id} sent anything"
            stream.collected.add(frame)


async def read_to_status(
    call: grpc.aio.StreamStreamCall, collected: Collected, timeout: float = 10.0
) -> grpc.StatusCode:
    """Read every frame until the call ends, whatever its status; returns the status."""
    async with asyncio.timeout(timeout):
        try:
            while (frame := await call.read()) is not grpc.aio.EOF:
                collected.add(frame)
        except grpc.aio.AioRpcError:
            pass  # a non-OK status: the frames before it were all collected
        code: grpc.StatusCode = await call.code()
        return code


def assert_queue_full(collected: Collected, request_id: str) -> None:
    """`request_id` was refused with exactly one retryable RESOURCE_EXHAUSTED frame and nothing else."""
    frames = collected.frames[request_id]
    assert len(frames) == 1, f"{request_id}: {len(frames)} frames"
    refusal = frames[0]
    assert refusal.final and not refusal.success and refusal.code == 429, request_id
    assert refusal.error.status == "RESOURCE_EXHAUSTED" and refusal.error.retryable, request_id
    assert refusal.error.retryAfterMs > 0, request_id


def assert_echoed(collected: Collected, request_id: str, text: str) -> None:
    terminal = collected.terminal(request_id)
    assert terminal.success, f"{request_id}: {terminal.error}"
    assert collected.text(request_id) == text and "".join(terminal.data.assistant.contents) == text


def key_id_of(api_key: str) -> str:
    return api_key.split("_")[1]  # ia_<key_id>_<secret>


def raw_stream_chat(gateway: RunningGateway) -> grpc.aio.StreamStreamMultiCallable:
    """StreamChat without (de)serializers: bytes written are sent as they are, frames read are bytes."""
    return gateway.channel.stream_stream(STREAM_CHAT, request_serializer=None, response_deserializer=None)


# --- item 6: an undecodable message is one request's error --------------------------------------------------


def invalid_utf8_request(request_id: str) -> bytes:
    """A ChatRequest whose requestId is readable but whose user content is not UTF-8 (proto3 strings must be)."""
    placeholder = "PLACEHOLDER-CONTENT"
    raw = chat_request(request_id, placeholder, provider=PROBE).SerializeToString()
    assert raw.count(placeholder.encode()) == 1
    return raw.replace(placeholder.encode(), b"\xff\xfe" * (len(placeholder) // 2) + b"\xff")


def deeply_nested_request(request_id: str, depth: int = 200) -> bytes:
    """A ChatRequest whose credential.value is a Struct nested `depth` levels, written as wire bytes by hand
    (protobuf itself refuses to build one that deep)."""
    struct = b""  # the innermost Struct: empty
    for _ in range(depth):
        value = b"\x2a" + _varint(len(struct)) + struct  # Value.struct_value (5)
        entry = b"\x0a\x01k\x12" + _varint(len(value)) + value  # Struct.fields (1): {key (1) "k", value (2)}
        struct = b"\x0a" + _varint(len(entry)) + entry
    credential_bytes = b"\x08\x01\x12" + _varint(len(struct)) + struct  # Credential.id (1) = 1, .value (2)
    request = chat_request(request_id, "nested", provider=PROBE).SerializeToString()
    return request + b"\x0a" + _varint(len(credential_bytes)) + credential_bytes  # ChatRequest.credential (1)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


async def test_an_undecodable_message_is_that_requests_invalid_argument(gateway: RunningGateway) -> None:
    call = raw_stream_chat(gateway)(metadata=gateway.metadata)
    await call.write(
        chat_request("a", "alpha beta gamma delta", provider=PROBE, simulated_delay_ms=20).SerializeToString()
    )
    await call.write(invalid_utf8_request("bad-utf8"))
    await call.write(deeply_nested_request("too-deep"))
    await call.write(chat_request("b", "bravo charlie", provider=PROBE).SerializeToString())
    await call.done_writing()
    collected = Collected()
    async with asyncio.timeout(10):
        while (raw := await call.read()) is not grpc.aio.EOF:
            collected.add(pb.ChatResponse.FromString(raw))
    assert await call.code() == grpc.StatusCode.OK
    for request_id in ("bad-utf8", "too-deep"):
        frames = collected.frames[request_id]
        assert len(frames) == 1, f"{request_id}: {len(frames)} frames"
        refusal = frames[0]
        assert refusal.final and not refusal.success and refusal.code == 400, request_id
        assert refusal.error.status == "INVALID_ARGUMENT", request_id
    assert_echoed(collected, "a", "alpha beta gamma delta")
    assert_echoed(collected, "b", "bravo charlie")
    assert set(collected.frames) == {"a", "bad-utf8", "too-deep", "b"}


# --- item 5: bounded queues -------------------------------------------------------------------------------------


async def test_a_full_stream_queue_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, max_inflight_per_stream=1, max_queued_per_stream=3) as running:
        stream = running.open_stream()
        await stream.send(slow_request("slow"))
        await read_first_delta(stream, "slow")
        quick = [f"quick-{n}" for n in range(10)]
        await stream.send(*(chat_request(rid, f"reply of {rid}", provider=PROBE) for rid in quick))
        collected = await stream.read_until_done(["slow", *quick], timeout=20)
        # The stream's reader handles requests in order: the first 3 wait (the slow one runs), the other 7 are refused.
        for rid in quick[:3]:
            assert_echoed(collected, rid, f"reply of {rid}")
        for rid in quick[3:]:
            assert_queue_full(collected, rid)
        assert_echoed(collected, "slow", SLOW)
        slow_end = collected.order.index(collected.terminal("slow"))
        assert all(collected.order.index(collected.frames[rid][0]) < slow_end for rid in quick[3:]), (
            "the refusals must come while the slow request still holds the only slot"
        )
        assert running.probe.peak_active == 1
        assert sorted(running.probe.started) == sorted(["slow", *quick[:3]])
        await stream.send(chat_request("after", "the stream still works", provider=PROBE))
        assert_echoed(await stream.read_until_done(["after"]), "after", "the stream still works")
        await stream.call.done_writing()
        assert await stream.call.code() == grpc.StatusCode.OK


async def test_the_stream_queue_is_bounded_in_bytes(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, max_inflight_per_stream=1, max_queued_bytes_per_stream=4 * KIB) as running:
        texts = {f"bytes-{n}": f"bytes-{n} " + " ".join(["pad"] * 470) for n in range(6)}
        requests = [chat_request(rid, text, provider=PROBE) for rid, text in texts.items()]
        sizes = {len(request.SerializeToString()) for request in requests}
        assert len(sizes) == 1
        size = sizes.pop()
        assert 2 * size <= 4 * KIB < 3 * size, size  # two such requests may wait, not three
        stream = running.open_stream()
        await stream.send(slow_request("slow"))
        await read_first_delta(stream, "slow")
        await stream.send(*requests)
        ids = list(texts)
        collected = await stream.read_until_done(["slow", *ids], timeout=20)
        for rid in ids[:2]:
            assert_echoed(collected, rid, texts[rid])
        for rid in ids[2:]:
            assert_queue_full(collected, rid)
        assert_echoed(collected, "slow", SLOW)


async def test_the_queue_is_bounded_per_principal_across_streams(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, max_inflight_per_stream=1, max_queued_per_principal=2) as running:
        other_key, _ = running.store.create(name="other", organization_id="org-2", project_id="proj-2")
        first, second = running.open_stream(), running.open_stream()
        other = running.open_stream(metadata=(("x-api-key", other_key),))
        for stream, rid in ((first, "slow-1"), (second, "slow-2"), (other, "slow-other")):
            await stream.send(slow_request(rid))
            await read_first_delta(stream, rid)

        # The third on the first stream is refused: its principal already has 2 waiting (the first stream's own bound
        # is the default, 256). Its refusal also proves the reader handled the first two.
        await first.send(*(chat_request(f"p1-{n}", "first stream", provider=PROBE) for n in range(3)))
        await first.read_until_done(["p1-2"])
        assert_queue_full(first.collected, "p1-2")
        # The same principal on another stream: nothing more may wait.
        await second.send(*(chat_request(f"p2-{n}", "second stream", provider=PROBE) for n in range(2)))
        await second.read_until_done(["p2-0", "p2-1"])
        assert_queue_full(second.collected, "p2-0")
        assert_queue_full(second.collected, "p2-1")
        # Another principal has its own bound.
        await other.send(*(chat_request(f"o-{n}", "other principal", provider=PROBE) for n in range(2)))

        collected = await first.read_until_done(["slow-1", "p1-0", "p1-1"], timeout=20)
        assert_echoed(collected, "p1-0", "first stream")
        assert_echoed(collected, "p1-1", "first stream")
        collected = await other.read_until_done(["slow-other", "o-0", "o-1"], timeout=20)
        assert_echoed(collected, "o-0", "other principal")
        assert_echoed(collected, "o-1", "other principal")
        collected = await second.read_until_done(["slow-2"], timeout=20)
        assert_echoed(collected, "slow-2", SLOW)
        # Once nothing waits any more, the principal may queue again.
        await second.send(chat_request("p2-after", "room again", provider=PROBE))
        assert_echoed(await second.read_until_done(["p2-after"]), "p2-after", "room again")


# --- item 7: no frame over the message size limit ---------------------------------------------------------------


class LargeReplyProvider(Provider):
    """The simulated provider, answering far more than the request carries (a request may not exceed the message
    limit either, so the reply cannot be spelled out in `model.simulated_reply`).

    ``model.reply_repeat``: the reply is one "word", ``model.reply_unit`` (default "x") repeated that many times;
    ``model.tool_argument_chars``: no text, one tool call whose arguments are that many "y" (the simulator streams
    them in two halves).
    """

    name = LARGE

    def __init__(self, credential: CredentialValue) -> None:
        self._inner = SimulatedProvider(credential)

    def stream_chat(self, call: ChatCall) -> ChatStream:
        parameters = dict(call.parameters)
        repeat = parameters.pop("model.reply_repeat", None)
        unit = parameters.pop("model.reply_unit", "x")
        argument_chars = parameters.pop("model.tool_argument_chars", None)
        if isinstance(repeat, float) and isinstance(unit, str):
            parameters["model.simulated_reply"] = unit * int(repeat)
        if isinstance(argument_chars, float):
            parameters["model.simulated_reply"] = ""
            calls = [{"name": "big_tool", "arguments": "y" * int(argument_chars)}]
            parameters["model.simulated_tool_calls"] = orjson.dumps(calls).decode()
        return self._inner.stream_chat(dataclasses.replace(call, parameters=parameters))


def _large_factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    return LargeReplyProvider(credential)


LIMIT = 64 * KIB
# Characters of 1, 2, 3 and 4 UTF-8 bytes: wherever a 200 KB run of them is cut, the cut mostly falls inside one.
MIXED_WIDTHS = "a\u00e9\u20ac\U0001f600"


@pytest.fixture
async def small_frames(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway whose messages may be at most 64 KiB (the client's receive limit, 4 MiB, is not the bound)."""
    gateway = await start_gateway(make_settings(tmp_path, max_message_bytes=LIMIT))
    gateway.server.registry.register(ProviderSpec(LARGE, _large_factory, ALL_RPCS, "simulated, with large replies"))
    yield gateway
    await gateway.channel.close()
    await gateway.server.stop()


def assert_too_large(collected: Collected, request_id: str) -> None:
    terminal = collected.terminal(request_id)
    assert not terminal.success and terminal.code == 413, f"{request_id}: {terminal.code} {terminal.error}"
    assert terminal.error.status == "RESOURCE_EXHAUSTED" and not terminal.error.retryable
    assert terminal.ByteSize() <= LIMIT


async def test_a_long_delta_is_split_and_an_oversized_final_frame_is_a_413(small_frames: RunningGateway) -> None:
    stream = small_frames.open_stream()
    await stream.send(
        chat_request("huge", "ignored", provider=LARGE, reply_unit=MIXED_WIDTHS, reply_repeat=20_000),
        chat_request("fits", "ignored", provider=LARGE, reply_repeat=40_000),
    )
    await stream.call.done_writing()
    collected = await stream.read_to_end(timeout=20)
    assert await stream.call.code() == grpc.StatusCode.OK
    assert all(frame.ByteSize() <= LIMIT for frame in collected.order)
    deltas = [frame for frame in collected.frames["huge"] if not frame.final]
    assert len(deltas) > 1 and all(frame.success for frame in deltas)
    assert collected.text("huge") == MIXED_WIDTHS * 20_000  # the deltas carried the whole reply, no character cut
    assert_too_large(collected, "huge")
    assert_echoed(collected, "fits", "x" * 40_000)  # a final frame that fits is sent as it is
    assert collected.terminal("fits").finishReason == "stop"


async def test_long_tool_call_arguments_are_split(small_frames: RunningGateway) -> None:
    stream = small_frames.open_stream()
    await stream.send(chat_request("tool", "ignored", provider=LARGE, tool_argument_chars=200_000))
    await stream.call.done_writing()
    collected = await stream.read_to_end(timeout=20)
    assert await stream.call.code() == grpc.StatusCode.OK
    assert all(frame.ByteSize() <= LIMIT for frame in collected.order)
    calls = [frame.data.assistant.toolCalls[0] for frame in collected.frames["tool"] if not frame.final]
    assert len(calls) > 2  # the simulator's two 100 KB halves, each split again
    assert {call.index for call in calls} == {0}
    assert "".join(call.function.arguments for call in calls) == "y" * 200_000
    assert calls[0].id and calls[0].function.name == "big_tool"
    assert [call for call in calls if call.function.name] == [calls[0]]  # id and name go with the first piece only
    assert_too_large(collected, "tool")


async def test_the_smallest_message_limit_still_splits_deltas(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, max_message_bytes=1024) as running:
        running.server.registry.register(ProviderSpec(LARGE, _large_factory, ALL_RPCS, "simulated, large replies"))
        stream = running.open_stream()
        await stream.send(chat_request("long", "ignored", provider=LARGE, reply_repeat=3000))
        frames: list[pb.ChatResponse] = []
        async with asyncio.timeout(10):
            while not (frames and frames[-1].final):
                assert len(frames) < 100, f"a 3000-byte reply became {len(frames)}+ frames, {frames[-1]}"
                frame = await stream.call.read()
                assert frame is not grpc.aio.EOF
                frames.append(frame)
        assert all(frame.ByteSize() <= 1024 for frame in frames)
        assert "".join("".join(frame.data.assistant.contents) for frame in frames[:-1]) == "x" * 3000
        assert frames[-1].code == 413


# --- item 9: a requestId may be reused once its request has ended ----------------------------------------------


async def test_an_id_reused_after_its_request_ended_is_a_new_request(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    for round_ in range(20):
        text = f"round {round_} here"
        await stream.send(chat_request("again", text, provider=PROBE))  # as soon as the previous one ended
        frames: list[pb.ChatResponse] = []
        async with asyncio.timeout(10):
            while not (frames and frames[-1].final):
                frame = await stream.call.read()
                assert frame is not grpc.aio.EOF
                frames.append(frame)
        assert all(frame.requestId == "again" for frame in frames)
        assert not [frame for frame in frames if frame.error.status], f"round {round_}: {frames[-1].error}"
        assert frames[-1].success and "".join(frames[-1].data.assistant.contents) == text
    await stream.call.done_writing()
    assert await stream.call.code() == grpc.StatusCode.OK
    assert gateway.probe.started == ["again"] * 20


# --- item 10: a refused stream gets its own status, even when the client wrote first -------------------------


async def refusal_codes(gateway: RunningGateway, metadata: Metadata, tries: int = 30) -> list[grpc.StatusCode]:
    """Open `tries` streams that each write 20 requests before reading; the status each one ends with."""
    stream_chat = raw_stream_chat(gateway)
    request = chat_request("r", "hello", provider=PROBE).SerializeToString()
    codes = []
    for _ in range(tries):
        call = stream_chat(metadata=metadata)
        for _ in range(20):
            try:
                await call.write(request)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                break  # the call already ended: what counts is the status it ended with
        codes.append(await read_to_status(call, Collected()))
    return codes


async def test_a_refused_stream_is_unauthenticated_even_after_early_writes(gateway: RunningGateway) -> None:
    codes = await refusal_codes(gateway, (("x-api-key", "ia_bogusbogus_notasecret"),))
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 30, codes


async def test_a_draining_server_refuses_streams_as_unavailable_even_after_early_writes(
    gateway: RunningGateway,
) -> None:
    gateway.server.lifecycle.drain()
    codes = await refusal_codes(gateway, gateway.metadata)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 30, codes
    assert not gateway.probe.started


# --- item 2: revocation and expiry reach open streams ----------------------------------------------------------


def assert_unauthenticated(collected: Collected, request_id: str) -> None:
    terminal = collected.terminal(request_id)
    assert not terminal.success and terminal.code == 401, f"{request_id}: {terminal.code} {terminal.error}"
    assert terminal.error.status == "UNAUTHENTICATED"


async def test_a_key_revoked_while_its_stream_is_open_ends_the_stream(gateway: RunningGateway) -> None:
    stream = gateway.open_stream()
    await stream.send(chat_request("before", "still valid", provider=PROBE))
    assert_echoed(await stream.read_until_done(["before"]), "before", "still valid")
    await stream.send(slow_request("in-flight"))
    await read_first_delta(stream, "in-flight")
    assert gateway.store.revoke(key_id_of(gateway.api_key))
    await stream.send(chat_request("after", "too late", provider=PROBE))
    collected = await stream.read_until_done(["after", "in-flight"])
    assert len(collected.frames["after"]) == 1
    assert_unauthenticated(collected, "after")
    assert_unauthenticated(collected, "in-flight")  # cut short, with its one terminal frame
    assert await read_to_status(stream.call, collected) == grpc.StatusCode.UNAUTHENTICATED
    assert len(collected.terminals("in-flight")) == 1 and len(collected.frames["after"]) == 1
    await gateway.probe.wait_for(lambda: "in-flight" in gateway.probe.closed)
    assert "after" not in gateway.probe.started


class WallClock:
    """The authenticator's wall clock, moved by the test (it starts at the real time: tokens are issued with it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def start_gateway_with_wall_clock(settings: Settings, wall_clock: WallClock) -> RunningGateway:
    """`tests.conftest.start_gateway`, with an authenticator reading tokens' time claims from `wall_clock`."""
    probe = ProbeLog()
    registry = default_registry()
    registry.register(probe_spec(probe))
    store = ApiKeyStore(settings.data_dir)
    authenticator = Authenticator(settings, store=store, wall_clock=wall_clock)
    server = GatewayServer(settings, registry=registry, authenticator=authenticator)
    port = await server.start()
    api_key, _ = store.create(name="tests", organization_id="org-1", project_id="proj-1")
    return RunningGateway(server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), api_key, store, probe)


async def test_a_token_expiring_while_its_stream_is_open_ends_the_stream(tmp_path: Path) -> None:
    clock = WallClock()
    running = await start_gateway_with_wall_clock(make_settings(tmp_path), clock)
    try:
        token = issue_service_token(JWT_SECRET, "org-jwt", "proj-jwt", ttl_s=60)
        stream = running.open_stream(metadata=(("x-internal-service-key", token),))
        await stream.send(chat_request("before", "token still valid", provider=PROBE))
        assert_echoed(await stream.read_until_done(["before"]), "before", "token still valid")
        await stream.send(slow_request("in-flight"))
        await read_first_delta(stream, "in-flight")
        clock.now += 60 + DEFAULT_LEEWAY_S + 1  # past exp, leeway included
        await stream.send(chat_request("after", "token expired", provider=PROBE))
        collected = await stream.read_until_done(["after", "in-flight"])
        assert_unauthenticated(collected, "after")
        assert_unauthenticated(collected, "in-flight")
        assert await read_to_status(stream.call, collected) == grpc.StatusCode.UNAUTHENTICATED
        assert len(collected.terminals("in-flight")) == 1 and len(collected.frames["after"]) == 1
        assert "after" not in running.probe.started
    finally:
        await running.channel.close()
        await running.server.stop()


# --- the access log ---------------------------------------------------------------------------------------------

VENDOR_KEY = "sk-vendor-canary-5f1d9c"


async def test_one_access_log_line_per_request_without_secrets(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="integration_api.access")
    vendor = credential(key=VENDOR_KEY)
    stream = gateway.open_stream()
    await stream.send(
        chat_request("log-ok", "fine", provider="simulated", cred=vendor, name="model-ok"),
        chat_request("log-429", "limited", provider="simulated", cred=vendor, name="model-429", simulated_error=429),
    )
    await stream.call.done_writing()
    collected = await stream.read_to_end()
    assert collected.terminal("log-ok").success and collected.terminal("log-429").code == 429
    unary = chat_request("log-unary", "unary", provider="simulated", cred=vendor, name="model-unary")
    assert (await gateway.unified.Chat(unary, metadata=gateway.metadata)).success
    embedding = pb.EmbeddingRequest(
        providerName="simulated",
        credential=vendor,
        content={0: "embed this"},
        modelParameters={"model.name": packed_value("model-embed")},
    )
    assert (await gateway.unified.Embedding(embedding, metadata=gateway.metadata)).success

    records = [record for record in caplog.records if record.name == "integration_api.access"]
    assert all(record.levelno == logging.INFO for record in records)
    expected = [
        ("StreamChat", "log-ok", "model-ok", "OK", 200),
        ("StreamChat", "log-429", "model-429", "RESOURCE_EXHAUSTED", 429),
        ("Chat", "log-unary", "model-unary", "OK", 200),
        ("Embedding", "", "model-embed", "OK", 200),
    ]
    assert len(records) == len(expected), [record.getMessage() for record in records]
    key_id = key_id_of(gateway.api_key)
    for rpc, request_id, model, status, code in expected:
        lines = [record for record in records if record.access["rpc"] == rpc and record.access["model"] == model]  # type: ignore[attr-defined]
        assert len(lines) == 1, (rpc, model)
        line = lines[0].getMessage()
        for part in (
            f"request={request_id or '-'} ",
            f"rpc={rpc} ",
            f"key={key_id} org=org-1 project=proj-1",
            "provider=simulated ",
            f"model={model} ",
            f"status={status} code={code} ",
        ):
            assert part in line, (part, line)
    secret = gateway.api_key.split("_", 2)[2]
    for record in records:
        text = f"{record.getMessage()} {record.access}"  # type: ignore[attr-defined]
        assert VENDOR_KEY not in text and secret not in text and gateway.api_key not in text
