"""Property: whatever arrives on one stream, the server never crashes and every request gets exactly one terminal
frame: random ChatRequests (random fields, odd unicode, huge strings, unpackable Any values, duplicate ids, stray
cancels), then raw bytes (valid requests mixed with invalid UTF-8 in a string field, a credential Struct nested 200
deep, mutated and arbitrary bytes), each undecodable message answered by one INVALID_ARGUMENT error frame."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import any_pb2, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import UndecodableRequest, decode_chat_request
from tests.conftest import make_settings, start_gateway
from tests.fuzz.seeds import corrupt_string, deep_credential_request

REQUESTS_PER_STREAM = 1000

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.just("\u202e\u0000\ufeff𝕳𝖊𝖑𝖑𝖔 👩‍👩‍👧 \u0301"),
    st.integers(min_value=10_000, max_value=200_000).map(lambda n: "x" * n),
    st.integers(min_value=1, max_value=400).map(lambda n: "w " * n),
)


@st.composite
def parameter(draw: st.DrawFn) -> any_pb2.Any:
    packed = any_pb2.Any()
    choice = draw(st.integers(0, 4))
    if choice == 0:
        packed.Pack(struct_pb2.Value(number_value=draw(st.floats(allow_nan=False, allow_infinity=False))))
    elif choice == 1:
        packed.Pack(struct_pb2.Value(string_value=draw(odd_text)))
    elif choice == 2:
        packed.type_url = "type.googleapis.com/google.protobuf.Value"
        packed.value = draw(st.binary(max_size=16))  # usually unpackable
    elif choice == 3:
        packed.type_url = draw(st.text(max_size=30))
    else:
        packed.Pack(struct_pb2.Value(bool_value=draw(st.booleans())))
    return packed


@st.composite
def message(draw: st.DrawFn) -> pb.Message:
    role = draw(st.sampled_from(["", "user", "system", "assistant", "tool", "wizard"]))
    kind = draw(st.sampled_from(["user", "system", "assistant", "tool", "none"]))
    text = draw(odd_text)
    if kind == "user":
        return pb.Message(role=role, user=pb.UserMessage(content=text))
    if kind == "system":
        return pb.Message(role=role, system=pb.SystemMessage(content=text))
    if kind == "assistant":
        return pb.Message(role=role, assistant=pb.AssistantMessage(contents=[text]))
    if kind == "tool":
        tools = [pb.ToolMessage.Tool(name=text[:10], id="t", content=text)] if draw(st.booleans()) else []
        return pb.Message(role=role, tool=pb.ToolMessage(tools=tools))
    return pb.Message(role=role)


@st.composite
def chat_request(draw: st.DrawFn) -> pb.ChatRequest:
    keys = st.sampled_from(["model.name", "model.temperature", "model.simulated_reply", "model.simulated_error",
                            "model.simulated_tool_calls", "model.max_tokens", "weird key ✨", ""])  # fmt: skip
    return pb.ChatRequest(
        requestId=draw(st.one_of(st.sampled_from(["", "dup", "dup2"]), st.text(max_size=300))),
        providerName=draw(st.sampled_from(["simulated", "", "nope", "openai"])),
        conversations=draw(st.lists(message(), max_size=4)),
        modelParameters=draw(st.dictionaries(keys, parameter(), max_size=3)),
        additionalData=draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)),
        action=draw(st.sampled_from([pb.REQUEST_ACTION_START] * 9 + [pb.REQUEST_ACTION_CANCEL])),
    )


class OneStream:
    """One gateway and ONE StreamChat stream, kept across every Hypothesis example (on a private event loop)."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.running = self.loop.run_until_complete(start_gateway(make_settings(data_dir, retry_max_attempts=1)))
        self.call = self.loop.run_until_complete(self._open())
        self.sent = 0

    async def _open(self) -> grpc.aio.StreamStreamCall:
        return self.running.unified.StreamChat(metadata=self.running.metadata)

    async def _exchange(self, batch: int, requests: list[pb.ChatRequest]) -> Counter[str]:
        for request in requests:
            if request.requestId:
                request.requestId = f"b{batch}:{request.requestId}"
            await self.call.write(request)
        expected = sum(1 for r in requests if r.action == pb.REQUEST_ACTION_START)
        terminals: Counter[str] = Counter()
        async with asyncio.timeout(60):
            while sum(terminals.values()) < expected:
                frame = await self.call.read()
                assert frame is not grpc.aio.EOF, "the stream ended"
                if frame.final:
                    terminals[frame.requestId] += 1
        return terminals

    def exchange(self, batch: int, requests: list[pb.ChatRequest]) -> None:
        terminals = self.loop.run_until_complete(self._exchange(batch, requests))
        self.sent += len(requests)
        started = Counter(r.requestId for r in requests if r.action == pb.REQUEST_ACTION_START)
        assert terminals == started

    async def _finish(self) -> None:
        await self.call.done_writing()
        while (frame := await self.call.read()) is not grpc.aio.EOF:
            assert not frame.final, f"{frame.requestId!r} got more than one terminal frame"
        assert await self.call.code() == grpc.StatusCode.OK
        version = await self.running.unified.GetVersion(pb.GetVersionRequest(), metadata=self.running.metadata)
        assert version.protocolRevision  # the server still answers
        await self.running.channel.close()
        await self.running.server.stop()

    def finish(self) -> None:
        try:
            self.loop.run_until_complete(self._finish())
        finally:
            self.loop.close()


BATCH = 25
BATCHES = REQUESTS_PER_STREAM // BATCH


def test_every_random_request_gets_exactly_one_terminal_frame(tmp_path: Path) -> None:
    stream = OneStream(tmp_path)
    batches = iter(range(BATCHES))

    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(requests=st.lists(chat_request(), min_size=BATCH, max_size=BATCH))
    def one_batch(requests: list[pb.ChatRequest]) -> None:
        stream.exchange(next(batches, BATCHES), requests)

    try:
        one_batch()
        assert stream.sent >= REQUESTS_PER_STREAM * 0.9  # hypothesis may stop a little early on duplicates
    finally:
        stream.finish()


# --- raw bytes ---------------------------------------------------------------------------------------------------

RAW_STREAM_CHAT = "/integration_api.UnifiedProviderService/StreamChat"
RAW_BATCH = 20
RAW_BATCHES = 50
CONTENT = "content:"  # marks the user content in a serialization (no requestId contains it)


def simulated_request(request_id: str, text: str) -> bytes:
    content = pb.UserMessage(content=CONTENT + text)
    return pb.ChatRequest(
        requestId=request_id, providerName="simulated", conversations=[pb.Message(role="user", user=content)]
    ).SerializeToString()


@dataclass(frozen=True)
class Raw:
    """One raw message to send, built from the requestId it is sent under. `undecodable` ones are so by
    construction; mutated and arbitrary bytes may or may not decode."""

    kind: str
    build: Callable[[str], bytes]
    undecodable: bool = False
    keeps_id: bool = True  # an undecodable message whose error frame carries the id it was built with ("" if not)


@st.composite
def raw_message(draw: st.DrawFn) -> Raw:
    text = draw(st.text(max_size=30))
    kind = draw(st.sampled_from(["valid"] * 4 + ["bad-content", "bad-id", "deep", "mutated", "arbitrary"]))
    if kind == "valid":
        return Raw(kind, lambda rid: simulated_request(rid, text))
    if kind == "bad-content":
        index = draw(st.integers(0, 1000))
        return Raw(kind, lambda rid: corrupt_string(simulated_request(rid, text), CONTENT + text, index), True)
    if kind == "bad-id":
        index = draw(st.integers(0, 1000))
        return Raw(kind, lambda rid: corrupt_string(simulated_request(rid, text), rid, index), True, keeps_id=False)
    if kind == "deep":
        depth = draw(st.sampled_from([200, draw(st.integers(60, 300))]))  # undecodable from about 33
        return Raw(kind, lambda rid: deep_credential_request(rid, depth), True)
    if kind == "mutated":
        writes = draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
        cut = draw(st.one_of(st.none(), st.integers(0, 200)))

        def mutate(rid: str) -> bytes:
            data = bytearray(simulated_request(rid, text))
            for position, byte in writes:
                data[position % len(data)] = byte
            return bytes(data[:cut])

        return Raw(kind, mutate)
    data = draw(st.binary(max_size=200))
    return Raw(kind, lambda rid: data)


@dataclass
class Expected:
    """What a batch of raw messages must get back, per requestId."""

    terminals: Counter[str] = field(default_factory=Counter)  # final frames
    refused: Counter[str] = field(default_factory=Counter)  # of which undecodable: INVALID_ARGUMENT error frames


class RawStream:
    """One gateway and ONE raw-bytes StreamChat stream across every Hypothesis example (on a private event loop)."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.running = self.loop.run_until_complete(start_gateway(make_settings(data_dir, retry_max_attempts=1)))
        self.call = self.loop.run_until_complete(self._open())
        self.used_ids: set[str] = set()  # ids of decodable messages sent: no two runs may share one
        self.kinds: Counter[str] = Counter()

    async def _open(self) -> grpc.aio.StreamStreamCall:
        stub = self.running.channel.stream_stream(RAW_STREAM_CHAT, request_serializer=None, response_deserializer=None)
        return stub(metadata=self.running.metadata)

    def _expect(self, raw: bytes, message: Raw, request_id: str, expected: Expected) -> bool:
        """Count what `raw` must get back into `expected`; False when it must not be sent (its id is taken)."""
        try:
            request = decode_chat_request(raw)
        except UndecodableRequest as error:
            request, refused_id = None, error.request_id
        if request is None:
            if message.undecodable:
                assert refused_id == (request_id if message.keeps_id else ""), message.kind
            expected.terminals[refused_id] += 1
            expected.refused[refused_id] += 1
            return True
        assert not message.undecodable, f"{message.kind} decoded"
        if request.requestId and request.requestId in self.used_ids:
            return False  # a duplicate in flight gets a non-terminal frame, or none if its twin already ended
        self.used_ids.add(request.requestId)
        if request.action != pb.REQUEST_ACTION_CANCEL:
            expected.terminals[request.requestId] += 1
        return True

    async def _exchange(self, batch: int, messages: list[Raw]) -> None:
        expected = Expected()
        for number, message in enumerate(messages):
            request_id = f"raw{batch}:{number}"
            raw = message.build(request_id)
            if self._expect(raw, message, request_id, expected):
                self.kinds[message.kind] += 1
                await self.call.write(raw)
        terminals: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        async with asyncio.timeout(60):
            while terminals.total() < expected.terminals.total():
                encoded = await self.call.read()
                assert encoded is not grpc.aio.EOF, "the stream ended"
                frame = pb.ChatResponse.FromString(encoded)
                if frame.final:
                    terminals[frame.requestId] += 1
                    if frame.code == 400 and frame.error.status == "INVALID_ARGUMENT":
                        refused[frame.requestId] += 1
        assert terminals == expected.terminals
        for request_id, count in expected.refused.items():
            assert refused[request_id] >= count, f"{request_id!r}: {refused[request_id]} of {count} refused"

    def exchange(self, batch: int, messages: list[Raw]) -> None:
        self.loop.run_until_complete(self._exchange(batch, messages))

    async def _finish(self) -> None:
        await self.call.write(simulated_request("last", "still there?"))  # the same stream still serves
        async with asyncio.timeout(30):
            while True:
                encoded = await self.call.read()
                assert encoded is not grpc.aio.EOF, "the stream ended"
                if (frame := pb.ChatResponse.FromString(encoded)).final:
                    break
        assert frame.requestId == "last" and frame.success, frame.error
        await self.call.done_writing()
        while (encoded := await self.call.read()) is not grpc.aio.EOF:
            frame = pb.ChatResponse.FromString(encoded)
            assert not frame.final, f"{frame.requestId!r} got more than one terminal frame"
        assert await self.call.code() == grpc.StatusCode.OK
        await self.running.channel.close()
        await self.running.server.stop()

    def finish(self) -> None:
        try:
            self.loop.run_until_complete(self._finish())
        finally:
            self.loop.close()


def test_every_raw_message_gets_exactly_one_terminal_frame(tmp_path: Path) -> None:
    stream = RawStream(tmp_path)
    batches = iter(range(RAW_BATCHES))

    @settings(max_examples=RAW_BATCHES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages=st.lists(raw_message(), min_size=RAW_BATCH, max_size=RAW_BATCH))
    def one_batch(messages: list[Raw]) -> None:
        stream.exchange(next(batches, RAW_BATCHES), messages)

    try:
        one_batch()
        # Every kind was sent (an id collision drops a message: a handful at most).
        assert all(
            stream.kinds[kind] > 0 for kind in ("valid", "bad-content", "bad-id", "deep", "mutated", "arbitrary")
        )
    finally:
        stream.finish()
