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


async def _run_stream(data_dir: Path, requests: list[pb.ChatRequest]) -> None:
    running = await start_gateway(make_settings(data_dir, retry_max_attempts=1))
    try:
        call = running.unified.StreamChat(metadata=running.metadata)
        for request in requests:
            await call.write(request)
        await call.done_writing()
        terminals: Counter[str] = Counter()
        async with asyncio.timeout(120):
            async for frame in call:
                if frame.final:
                    terminals[frame.requestId] += 1
        assert await call.code() == grpc.StatusCode.OK
        started = Counter(r.requestId for r in requests if r.action == pb.REQUEST_ACTION_START)
        assert terminals == started
        health = await running.unified.GetVersion(pb.GetVersionRequest(), metadata=running.metadata)
        assert health.protocolRevision  # the server is still answering
    finally:
        await running.channel.close()
        await running.server.stop()


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests=st.lists(chat_request(), min_size=REQUESTS_PER_STREAM, max_size=REQUESTS_PER_STREAM))
def test_every_random_request_gets_exactly_one_terminal_frame(
    tmp_path_factory: object, requests: list[pb.ChatRequest]
) -> None:
    data_dir = tmp_path_factory.mktemp("fuzz")  # type: ignore[attr-defined]
    asyncio.run(_run_stream(data_dir, requests))
