"""Helpers for tests that talk to a real gateway through a real gRPC channel."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, struct_pb2

from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc


def packed_value(value: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    message = struct_pb2.Value()
    if isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    else:
        message.string_value = str(value)
    packed.Pack(message)
    return packed


def credential(**value: Any) -> pb.Credential:
    struct = struct_pb2.Struct()
    struct.update(value)
    return pb.Credential(id=1, value=struct)


def user(text: str) -> pb.Message:
    return pb.Message(role="user", user=pb.UserMessage(content=text))


def chat_request(
    request_id: str,
    text: str = "hello there world",
    *,
    provider: str = "",
    messages: Iterable[pb.Message] | None = None,
    cred: pb.Credential | None = None,
    tools: Iterable[pb.ToolDefinition] = (),
    **params: Any,
) -> pb.ChatRequest:
    """A ChatRequest; keyword parameters become `model.<name>` parameters packed as google.protobuf.Value."""
    return pb.ChatRequest(
        requestId=request_id,
        providerName=provider,
        credential=cred or credential(key="test-key"),
        conversations=list(messages) if messages is not None else [user(text)],
        modelParameters={f"model.{name}": packed_value(value) for name, value in params.items()},
        toolDefinitions=list(tools),
    )


def cancel_request(request_id: str) -> pb.ChatRequest:
    return pb.ChatRequest(requestId=request_id, action=pb.REQUEST_ACTION_CANCEL)


@dataclass
class Collected:
    """Frames of one stream, grouped by requestId."""

    frames: dict[str, list[pb.ChatResponse]] = field(default_factory=lambda: defaultdict(list))
    order: list[pb.ChatResponse] = field(default_factory=list)

    def add(self, frame: pb.ChatResponse) -> None:
        self.frames[frame.requestId].append(frame)
        self.order.append(frame)

    def terminals(self, request_id: str) -> list[pb.ChatResponse]:
        return [f for f in self.frames[request_id] if f.final]

    def terminal(self, request_id: str) -> pb.ChatResponse:
        terminals = self.terminals(request_id)
        assert len(terminals) == 1, f"{request_id}: {len(terminals)} terminal frames"
        return terminals[0]

    def text(self, request_id: str) -> str:
        return "".join(
            "".join(f.data.assistant.contents) for f in self.frames[request_id] if not f.final and f.HasField("data")
        )

    def done(self, request_ids: Iterable[str]) -> bool:
        return all(self.terminals(rid) for rid in request_ids)


def metrics(frame: pb.ChatResponse) -> Mapping[str, str]:
    return {metric.name: metric.value for metric in frame.metrics}


class StreamDriver:
    """Holds one StreamChat call: write requests, read frames until given requests have ended."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call
        self.collected = Collected()

    async def send(self, *requests: pb.ChatRequest) -> None:
        for request in requests:
            await self.call.write(request)

    async def read_until_done(self, request_ids: Iterable[str], timeout: float = 10.0) -> Collected:
        ids = list(request_ids)
        async with asyncio.timeout(timeout):
            while not self.collected.done(ids):
                frame = await self.call.read()
                assert frame is not grpc.aio.EOF, "stream ended before every request finished"
                self.collected.add(frame)
        return self.collected

    async def read_to_end(self, timeout: float = 10.0) -> Collected:
        async with asyncio.timeout(timeout):
            while (frame := await self.call.read()) is not grpc.aio.EOF:
                self.collected.add(frame)
        return self.collected


def unified_stub(channel: grpc.aio.Channel) -> pb_grpc.UnifiedProviderServiceStub:
    return pb_grpc.UnifiedProviderServiceStub(channel)
