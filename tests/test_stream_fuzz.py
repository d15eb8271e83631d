"""Property: whatever ChatRequests arrive on one stream, the server never crashes and every request that
starts gets exactly one terminal frame (random fields, odd unicode, huge strings, unpackable Any values,
duplicate ids, stray cancels)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
from google.protobuf import any_pb2, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_api.proto import integration_api_pb2 as pb
from tests.conftest import make_settings, start_gateway

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
