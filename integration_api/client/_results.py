"""From the protocol's response messages to the client's typed events, results and exceptions.

Frames of revision-1 servers (no ``final`` flag, no typed usage) are understood too: their terminal frame is the
one that carries metrics (docs/protocol.md), and their usage is read from the token metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

from integration_api.client._errors import APIError, error_class_for_code, error_class_for_status
from integration_api.client._types import (
    AssistantMessage,
    ChatEvent,
    ChatResult,
    CredentialCheck,
    Embedding,
    EmbeddingResult,
    Message,
    ModerationResult,
    ProviderInfo,
    RerankedDocument,
    RerankResult,
    SystemMessage,
    TextDelta,
    Timings,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    ToolResult,
    Usage,
    UserMessage,
    VersionInfo,
)
from integration_api.proto import integration_api_pb2 as pb

_NS_PER_MS = 1_000_000


def metrics_of(response: pb.ChatResponse | pb.EmbeddingResponse) -> dict[str, str]:
    return {metric.name: metric.value for metric in response.metrics}


def _int(values: Mapping[str, str], name: str) -> int:
    try:
        return int(values.get(name, "0") or 0)
    except ValueError:
        return 0


# --- errors ---------------------------------------------------------------------------------------------------


def api_error(code: int, error: pb.Error, request_id: str | None = None) -> APIError:
    """The exception for a protocol `Error` (the status name decides the class; old servers: the code)."""
    code = code or error.errorCode
    cls = error_class_for_status(error.status) if error.status else error_class_for_code(code)
    return cls(
        error.errorMessage or error.humanMessage or f"the gateway answered with code {code}",
        code=code,
        human_message=error.humanMessage,
        retryable=error.retryable if error.status else None,
        retry_after=error.retryAfterMs / 1000 if error.retryAfterMs else None,
        request_id=request_id,
    )


# --- streamed chat --------------------------------------------------------------------------------------------


def is_duplicate_refusal(frame: pb.ChatResponse) -> bool:
    """The server refused a second request with an id already in flight (docs/protocol.md): not that id's end."""
    return not frame.final and not frame.success and frame.error.status == "ALREADY_EXISTS" and not frame.metrics


def is_refused_unavailable(frame: pb.ChatResponse) -> bool:
    """A server going away (draining, or the stream past its age) refused this request before it ran: the error
    frame is UNAVAILABLE and marked NOT_STARTED=true (docs/protocol.md), so it is safe to send anywhere again."""
    if frame.success or frame.error.status != "UNAVAILABLE":
        return False
    return any(metric.name == "NOT_STARTED" and metric.value == "true" for metric in frame.metrics)


def is_terminal(frame: pb.ChatResponse) -> bool:
    if is_duplicate_refusal(frame):
        return False
    return frame.final or not frame.success or len(frame.metrics) > 0


def events_from_frame(frame: pb.ChatResponse) -> list[ChatEvent]:
    """The events one frame carries; an error frame raises its `APIError`."""
    if not frame.success:
        raise api_error(frame.code, frame.error, frame.requestId or None)
    if is_terminal(frame):
        return [chat_result(frame)]
    assistant = frame.data.assistant
    events: list[ChatEvent] = []
    text = "".join(assistant.contents)
    if text:
        events.append(TextDelta(frame.requestId, text))
    for call in assistant.toolCalls:
        events.append(ToolCallDelta(frame.requestId, call.index, call.id, call.function.name, call.function.arguments))
    return events


def assistant_message(message: pb.Message) -> AssistantMessage:
    calls = sorted(message.assistant.toolCalls, key=lambda call: call.index)
    return AssistantMessage(
        "".join(message.assistant.contents),
        tuple(ToolCall(call.id, call.function.name, call.function.arguments) for call in calls),
    )


def message_from_proto(message: pb.Message) -> Message:
    kind = message.WhichOneof("message")
    if kind == "system":
        return SystemMessage(message.system.content)
    if kind == "user":
        return UserMessage(message.user.content)
    if kind == "tool":
        return ToolMessage(tuple(ToolResult(tool.id, tool.content, tool.name) for tool in message.tool.tools))
    return assistant_message(message)


def _usage(response: pb.ChatResponse, metrics: Mapping[str, str]) -> Usage:
    if response.HasField("usage"):
        usage = response.usage
        return Usage(usage.inputTokens, usage.outputTokens, usage.totalTokens)
    return Usage(_int(metrics, "INPUT_TOKEN"), _int(metrics, "OUTPUT_TOKEN"), _int(metrics, "TOTAL_TOKEN"))


def _timings(metrics: Mapping[str, str]) -> Timings:
    first = _int(metrics, "FIRST_TOKEN_RECIEVED_TIME")  # spelled so by the protocol
    return Timings(_int(metrics, "TIME_TAKEN") / _NS_PER_MS, first / _NS_PER_MS if first else None)


def chat_result(response: pb.ChatResponse) -> ChatResult:
    """The result of a successful final frame (or of a unary Chat response)."""
    if not response.success:
        raise api_error(response.code, response.error, response.requestId or None)
    metrics = metrics_of(response)
    return ChatResult(
        request_id=response.requestId,
        message=assistant_message(response.data),
        finish_reason=response.finishReason,
        usage=_usage(response, metrics),
        timings=_timings(metrics),
        provider_request_id=metrics.get("LLM_REQUEST_ID", ""),
    )


# --- unary results --------------------------------------------------------------------------------------------


def _raise_unless_success(response: pb.EmbeddingResponse | pb.RerankingResponse | pb.GetModerationResponse) -> None:
    if not response.success:
        raise api_error(response.code, response.error)


def embedding_result(response: pb.EmbeddingResponse) -> EmbeddingResult:
    _raise_unless_success(response)
    embeddings = sorted(response.data, key=lambda item: item.index)
    input_tokens = _int(metrics_of(response), "INPUT_TOKEN")
    return EmbeddingResult(
        tuple(Embedding(item.index, tuple(item.embedding)) for item in embeddings),
        Usage(input_tokens, 0, input_tokens),
    )


def rerank_result(response: pb.RerankingResponse) -> RerankResult:
    _raise_unless_success(response)
    ranked = sorted(response.data, key=lambda item: (-item.relevanceScore, item.index))
    return RerankResult(tuple(RerankedDocument(item.index, item.content, item.relevanceScore) for item in ranked))


def credential_check(response: pb.VerifyCredentialResponse) -> CredentialCheck:
    message = response.response if response.success else response.errorMessage
    return CredentialCheck(response.success, response.code, message)


def moderation_result(response: pb.GetModerationResponse) -> ModerationResult:
    _raise_unless_success(response)
    return ModerationResult({item.name: item.value for item in response.data})


def version_info(response: pb.GetVersionResponse) -> VersionInfo:
    return VersionInfo(
        server_version=response.serverVersion,
        protocol_revision=response.protocolRevision,
        minimum_client_revision=response.minimumClientRevision,
        providers=tuple(ProviderInfo(info.name, tuple(info.rpcs)) for info in response.providers),
    )
