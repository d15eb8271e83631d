"""The in-memory transport behind ``integration_api.testing``'s fake clients (like httpx's MockTransport).

It implements ``_transport.AsyncTransport`` over a script: each request is recorded as a typed `RecordedCall`,
answered by the script's next `Outcome`, and turned into the very protocol messages a real gateway would send,
so the fake clients run exactly the code the real ones run (routing, cancel, typed errors and all).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message as ProtoMessage

from integration_api.client._convert import message_proto
from integration_api.client._credentials import Credential
from integration_api.client._errors import APIError, InternalServerError, RequestCancelledError, UnimplementedError
from integration_api.client._results import message_from_proto
from integration_api.client._transport import SESSION_METHODS, StreamCall
from integration_api.client._types import (
    AssistantMessage,
    CredentialCheck,
    EmbeddingResult,
    Message,
    ModerationResult,
    RerankResult,
    Tool,
    ToolCall,
    Usage,
)
from integration_api.client._version import CLIENT_PROTOCOL_REVISION
from integration_api.proto import integration_api_pb2 as pb

R = TypeVar("R", bound=ProtoMessage)
_WORD = re.compile(r"\S+\s*")
FAKE_TARGET = "fake-gateway"


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A scripted chat reply: streamed word by word, then tool calls, then the final result."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None  # default: "tool_calls" when there are tool calls, else "stop"
    usage: Usage | None = None  # default: word counts
    delay: float = 0.0  # seconds before each delta, to make replies overlap or be cancellable in tests


Outcome: TypeAlias = FakeReply | str | APIError | EmbeddingResult | RerankResult | CredentialCheck | ModerationResult


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call the code under test made. `method` is the client method: chat, embed, rerank, verify_credential,
    moderate or get_version; `streamed` tells `stream().chat()` from the unary `chat()`."""

    method: str
    provider: str | None = None
    streamed: bool = False
    request_id: str | None = None
    model: str | None = None
    messages: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)  # without the "model." prefix
    credential: Credential | None = None
    inputs: tuple[str, ...] = ()  # embed: the texts; rerank: the documents; moderate: the content
    query: str = ""


Handler: TypeAlias = Callable[[RecordedCall], Outcome | None]


class Script(Protocol):
    """Where the fake transport gets its answers and records its calls (``testing.FakeGateway``)."""

    calls: list[RecordedCall]
    cancelled: list[str]

    def next_outcome(self, call: RecordedCall) -> Outcome: ...


def words(text: str) -> list[str]:
    """How a reply is streamed: each word with the whitespace that follows it."""
    return _WORD.findall(text.lstrip())


# --- recording: protocol requests back into typed calls -------------------------------------------------------


def _parameters(request: Any) -> tuple[str | None, dict[str, Any]]:
    values = {
        key.removeprefix("model."): json_format.MessageToDict(_unpacked(packed))
        for key, packed in request.modelParameters.items()
    }
    model = values.pop("name", None)
    return (str(model) if model is not None else None), values


def _unpacked(packed: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    packed.Unpack(value)
    return value


def _credential(credential: pb.Credential) -> Credential | None:
    values = json_format.MessageToDict(credential.value)
    return Credential({k: str(v) for k, v in values.items()}, credential.id) if values or credential.id else None


def _schema(parameter: pb.FunctionParameter) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": parameter.type or "object"}
    if parameter.properties:
        schema["properties"] = {}
        for name, prop in parameter.properties.items():
            entry: dict[str, Any] = {"type": prop.type, "description": prop.description} | (
                {"enum": list(prop.enum)} if prop.enum else {}
            )
            if prop.HasField("items"):
                entry["items"] = _schema(prop.items)
            schema["properties"][name] = entry
    if parameter.required:
        schema["required"] = list(parameter.required)
    return schema


def _record_chat(request: pb.ChatRequest, *, streamed: bool) -> RecordedCall:
    model, parameters = _parameters(request)
    tools = tuple(
        Tool(t.functionDefinition.name, t.functionDefinition.description, _schema(t.functionDefinition.parameters))
        for t in request.toolDefinitions
    )
    return RecordedCall(
        "chat",
        request.providerName or None,
        streamed,
        request.requestId,
        model,
        tuple(message_from_proto(message) for message in request.conversations),
        tools,
        parameters,
        _credential(request.credential),
    )


def _record_unary(method: str, request: Any) -> RecordedCall:
    if method == "Chat":
        return _record_chat(request, streamed=False)
    provider, credential = request.providerName or None, _credential(request.credential)
    if method == "VerifyCredential":
        return RecordedCall("verify_credential", provider, credential=credential)
    model, parameters = _parameters(request)
    if method == "GetModeration":
        model = request.model or model
        return RecordedCall("moderate", provider, model=model, parameters=parameters, credential=credential,
                            inputs=(request.content,))  # fmt: skip
    texts = tuple(text for _, text in sorted(request.content.items()))
    return RecordedCall(
        "embed" if method == "Embedding" else "rerank",
        provider,
        model=model,
        parameters=parameters,
        credential=credential,
        inputs=texts,
        query=getattr(request, "query", ""),
    )


# --- answering: typed outcomes as protocol responses ----------------------------------------------------------


def _error_frame(request_id: str, error: APIError) -> pb.ChatResponse:
    retry_ms = int((error.retry_after or 0) * 1000)
    wire = pb.Error(
        errorCode=error.code,
        errorMessage=error.message,
        humanMessage=error.human_message,
        status=error.status,
        retryable=error.retryable,
        retryAfterMs=retry_ms,
    )
    return pb.ChatResponse(code=error.code, success=False, requestId=request_id, error=wire, final=True)


def _reply_frames(request_id: str, call: RecordedCall, reply: FakeReply) -> list[pb.ChatResponse]:
    frames = []
    for word in words(reply.text):
        data = pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=[word]))
        frames.append(pb.ChatResponse(code=200, success=True, requestId=request_id, data=data))
    for index, tool_call in enumerate(reply.tool_calls):
        delta = pb.ToolCall(
            id=tool_call.id, type="function", index=index,
            function=pb.FunctionCall(name=tool_call.name, arguments=tool_call.arguments),
        )  # fmt: skip
        data = pb.Message(role="assistant", assistant=pb.AssistantMessage(toolCalls=[delta]))
        frames.append(pb.ChatResponse(code=200, success=True, requestId=request_id, data=data))
    frames.append(_final_frame(request_id, call, reply))
    return frames


def _final_frame(request_id: str, call: RecordedCall, reply: FakeReply) -> pb.ChatResponse:
    input_words = sum(len(words(getattr(message, "content", ""))) for message in call.messages)
    usage = reply.usage or Usage(input_words, len(words(reply.text)), input_words + len(words(reply.text)))
    return pb.ChatResponse(
        code=200,
        success=True,
        requestId=request_id,
        data=message_proto(AssistantMessage(reply.text, tuple(reply.tool_calls))),
        finishReason=reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
        metrics=[
            pb.Metric(name="LLM_REQUEST_ID", value=f"fake-{request_id}"),
            pb.Metric(name="STATUS", value="SUCCESS"),
        ],
        final=True,
        usage=pb.Usage(
            inputTokens=usage.input_tokens, outputTokens=usage.output_tokens, totalTokens=usage.total_tokens
        ),
    )


def _expect(outcome: Outcome, kinds: tuple[type, ...], method: str) -> Any:
    if isinstance(outcome, APIError):
        raise outcome.copy()
    if isinstance(outcome, str):
        outcome = FakeReply(outcome)
    if not isinstance(outcome, kinds):
        raise TypeError(
            f"FakeGateway: the next scripted outcome is a {type(outcome).__name__}, but {method} was called"
        )
    return outcome


def _unary_response(method: str, call: RecordedCall, outcome: Outcome) -> ProtoMessage:
    if method == "Chat":
        return _final_frame(call.request_id or "", call, _expect(outcome, (FakeReply,), "chat"))
    if method == "Embedding":
        result: EmbeddingResult = _expect(outcome, (EmbeddingResult,), "embed")
        data = [pb.Embedding(index=e.index, embedding=e.vector) for e in result.embeddings]
        metrics = [pb.Metric(name="INPUT_TOKEN", value=str(result.usage.input_tokens))]
        return pb.EmbeddingResponse(code=200, success=True, data=data, metrics=metrics)
    if method == "Reranking":
        ranked: RerankResult = _expect(outcome, (RerankResult,), "rerank")
        items = [
            pb.Reranking(index=r.index, content=r.document, relevanceScore=r.relevance_score) for r in ranked.results
        ]
        return pb.RerankingResponse(code=200, success=True, data=items)
    if method == "VerifyCredential":
        check: CredentialCheck = _expect(outcome, (CredentialCheck,), "verify_credential")
        response = pb.VerifyCredentialResponse(code=check.code, success=check.valid)
        if check.valid:
            response.response = check.message
        else:
            response.errorMessage = check.message
        return response
    moderation: ModerationResult = _expect(outcome, (ModerationResult,), "moderate")
    scores = [pb.Moderation(name=name, value=value) for name, value in moderation.scores.items()]
    return pb.GetModerationResponse(code=200, success=True, data=scores)


# --- the transport ------------------------------------------------------------------------------------------


class _FakeStreamCall:
    """One StreamChat call answered in memory: requests run concurrently, CANCEL stops one."""

    def __init__(self, gateway: Script, requests: AsyncIterator[pb.ChatRequest]) -> None:
        self._gateway = gateway
        self._frames: asyncio.Queue[pb.ChatResponse | None] = asyncio.Queue()
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._reader = asyncio.ensure_future(self._read(requests))

    async def _read(self, requests: AsyncIterator[pb.ChatRequest]) -> None:
        async for request in requests:
            if request.action == pb.REQUEST_ACTION_PING:
                self._frames.put_nowait(pb.ChatResponse(code=200, success=True, requestId=request.requestId, pong=True))
                continue
            if request.action == pb.REQUEST_ACTION_CANCEL:
                if (run := self._runs.get(request.requestId)) is not None:
                    self._gateway.cancelled.append(request.requestId)
                    run.cancel()
                continue
            call = _record_chat(request, streamed=True)
            run = asyncio.ensure_future(self._run(request.requestId, call, self._gateway.next_outcome(call)))
            self._runs[request.requestId] = run
        await asyncio.gather(*self._runs.values(), return_exceptions=True)
        self._frames.put_nowait(None)

    async def _run(self, request_id: str, call: RecordedCall, outcome: Outcome) -> None:
        try:
            if isinstance(outcome, APIError):
                frames = [_error_frame(request_id, outcome)]
            else:
                reply = _expect(outcome, (FakeReply,), "stream().chat")
                frames = _reply_frames(request_id, call, reply)
            for frame in frames:
                await asyncio.sleep(outcome.delay if isinstance(outcome, FakeReply) and not frame.final else 0)
                self._frames.put_nowait(frame)
        except asyncio.CancelledError:
            cancelled = RequestCancelledError(f"request {request_id!r} was cancelled by the client")
            self._frames.put_nowait(_error_frame(request_id, cancelled))
        except TypeError as exc:
            self._frames.put_nowait(_error_frame(request_id, InternalServerError(str(exc))))

    async def frames(self) -> AsyncIterator[pb.ChatResponse]:
        while (frame := await self._frames.get()) is not None:
            yield frame

    def cancel(self) -> None:
        self._reader.cancel()
        for run in self._runs.values():
            run.cancel()
        self._frames.put_nowait(None)


def _checked(response: ProtoMessage, response_type: type[R]) -> R:
    if not isinstance(response, response_type):
        raise TypeError(f"FakeGateway built a {type(response).__name__}, expected {response_type.__name__}")
    return response


class FakeTransport:
    def __init__(self, gateway: Script) -> None:
        self.gateway = gateway
        self.target = FAKE_TARGET

    async def unary(self, method: str, request: ProtoMessage, response_type: type[R], *, deadline: float | None) -> R:
        if method == "GetVersion":
            version = pb.GetVersionResponse(
                serverVersion="fake", protocolRevision=CLIENT_PROTOCOL_REVISION, minimumClientRevision=1
            )
            self.gateway.calls.append(RecordedCall("get_version"))
            return _checked(version, response_type)
        if method in SESSION_METHODS:
            raise UnimplementedError(f"the fake gateway keeps no sessions ({method}); test them on a real gateway")
        call = _record_unary(method, request)
        return _checked(_unary_response(method, call, self.gateway.next_outcome(call)), response_type)

    def open_stream(self, requests: AsyncIterator[pb.ChatRequest]) -> StreamCall:
        return _FakeStreamCall(self.gateway, requests)

    async def wait_for_ready(self, within: float) -> None:
        return None

    async def check_health(self, deadline: float | None) -> None:
        return None

    async def aclose(self) -> None:
        return None
