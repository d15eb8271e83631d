"""Building the `ChatResponse` frames of a request, following docs/protocol.md's conventions.

A request's response is zero or more delta frames followed by exactly one terminal frame: the final frame
(accumulated message, finishReason, metrics, usage) or an error frame. `ResponseAccumulator` gathers what the
final frame needs while the deltas go out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from integration_api.errors import GatewayError
from integration_api.proto import integration_api_pb2 as pb
from providers.types import ChatFinished, ToolCallDelta, Usage

ASSISTANT = "assistant"

# Wire bytes of the constant parts of a text-delta frame (see TextFrameEncoder).
_FRAME_HEAD = b"\x08\xc8\x01\x10\x01"  # code (1) = 200, success (2) = true
_REQUEST_ID_TAG = b"\x1a"  # requestId (3), omitted when empty as protobuf does
_DATA_TAG = b"\x22"  # data (4)
_ASSISTANT_MESSAGE_HEAD = b"\x0a\x09assistant\x52"  # Message.role (1) = "assistant", then the assistant (10) tag
_CONTENTS_TAG = b"\x12"  # AssistantMessage.contents (2)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class TextFrameEncoder:
    """Encodes one request's text-delta frames straight to wire bytes.

    Text deltas are most of the frames a gateway sends, so they skip building protobuf objects: the part that
    names the request is encoded once per request, and each delta costs a few byte concatenations. The bytes
    are exactly what `pb.ChatResponse(code=200, success=True, requestId=..., data=Message(role="assistant",
    assistant=AssistantMessage(contents=[text]))).SerializeToString()` gives (a test holds them to it).
    """

    __slots__ = ("_head",)

    def __init__(self, request_id: str) -> None:
        encoded = request_id.encode()
        request_id_field = _REQUEST_ID_TAG + _varint(len(encoded)) + encoded if encoded else b""
        self._head = _FRAME_HEAD + request_id_field + _DATA_TAG

    def __call__(self, text: str) -> bytes:
        encoded = text.encode()
        contents = _CONTENTS_TAG + _varint(len(encoded)) + encoded
        message = _ASSISTANT_MESSAGE_HEAD + _varint(len(contents)) + contents
        return self._head + _varint(len(message)) + message


def text_frame(request_id: str, text: str) -> pb.ChatResponse:
    """A text-delta frame as a message (the engine sends `TextFrameEncoder` bytes, which are the same)."""
    return pb.ChatResponse(
        code=200,
        success=True,
        requestId=request_id,
        data=pb.Message(role=ASSISTANT, assistant=pb.AssistantMessage(contents=(text,))),
    )


def tool_call_frame(request_id: str, delta: ToolCallDelta) -> pb.ChatResponse:
    call = pb.ToolCall(
        id=delta.id,
        type="function" if delta.name else "",
        function=pb.FunctionCall(name=delta.name, arguments=delta.arguments),
        index=delta.index,
    )
    return pb.ChatResponse(
        code=200,
        success=True,
        requestId=request_id,
        data=pb.Message(role=ASSISTANT, assistant=pb.AssistantMessage(toolCalls=(call,))),
    )


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ResponseAccumulator:
    """What one request has produced so far, and when.

    With a `limit` (the message size), it stops keeping the reply once the reply alone is larger (`overflowed`):
    its final frame could not be sent anyway, and a provider streaming without end must not grow the gateway.
    """

    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_output_ns: int = 0
    texts: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    limit: int | None = None
    size: int = 0  # characters of text and tool-call arguments so far (never more than their UTF-8 bytes)
    overflowed: bool = False

    @property
    def produced_output(self) -> bool:
        return self.first_output_ns != 0

    def mark_output(self) -> None:
        if not self.first_output_ns:
            self.first_output_ns = time.perf_counter_ns()

    def _grow(self, added: int) -> bool:
        """Count `added` characters; False once the reply is over the limit (and then drop what was kept)."""
        self.size += added
        if self.limit is not None and self.size > self.limit and not self.overflowed:
            self.overflowed = True
            self.texts.clear()
            self.tool_calls.clear()
        return not self.overflowed

    def add_text(self, text: str) -> None:
        self.mark_output()
        if self._grow(len(text)):
            self.texts.append(text)

    def add_tool_call(self, delta: ToolCallDelta) -> None:
        self.mark_output()
        if not self._grow(len(delta.arguments) + len(delta.id) + len(delta.name)):
            return
        parts = self.tool_calls.get(delta.index)
        if parts is None:
            parts = self.tool_calls[delta.index] = _ToolCallParts()
        parts.id = parts.id or delta.id
        parts.name = parts.name or delta.name
        parts.arguments.append(delta.arguments)

    def message(self) -> pb.Message:
        text = "".join(self.texts)
        calls = [
            pb.ToolCall(
                id=parts.id,
                type="function",
                function=pb.FunctionCall(name=parts.name, arguments="".join(parts.arguments)),
                index=index,
            )
            for index, parts in sorted(self.tool_calls.items())
        ]
        return pb.Message(
            role=ASSISTANT, assistant=pb.AssistantMessage(contents=[text] if text else [], toolCalls=calls)
        )

    def timing_metrics(self) -> list[pb.Metric]:
        elapsed = time.perf_counter_ns() - self.started_ns
        first = (self.first_output_ns - self.started_ns) if self.first_output_ns else 0
        return [
            pb.Metric(name="TIME_TAKEN", value=str(elapsed), description="nanoseconds from request to last frame"),
            pb.Metric(name="FIRST_TOKEN_RECIEVED_TIME", value=str(first), description="nanoseconds to first output"),
        ]


def _usage_metrics(usage: Usage) -> list[pb.Metric]:
    return [
        pb.Metric(name="INPUT_TOKEN", value=str(usage.input_tokens)),
        pb.Metric(name="OUTPUT_TOKEN", value=str(usage.output_tokens)),
        pb.Metric(name="TOTAL_TOKEN", value=str(usage.total_tokens)),
    ]


def final_frame(request_id: str, accumulated: ResponseAccumulator, finished: ChatFinished) -> pb.ChatResponse:
    usage = finished.usage
    metrics = [
        *_usage_metrics(usage),
        *accumulated.timing_metrics(),
        pb.Metric(name="LLM_REQUEST_ID", value=finished.provider_request_id),
        pb.Metric(name="STATUS", value="SUCCESS"),
    ]
    if finished.served_by:  # a routed request (revision 3): which target served it
        metrics.append(pb.Metric(name="SERVED_BY", value=finished.served_by))
    return pb.ChatResponse(
        code=200,
        success=True,
        requestId=request_id,
        data=accumulated.message(),
        metrics=metrics,
        finishReason=finished.finish_reason,
        final=True,
        usage=pb.Usage(
            inputTokens=usage.input_tokens, outputTokens=usage.output_tokens, totalTokens=usage.total_tokens
        ),
        servedBy=finished.served_by,
    )


def error_proto(error: GatewayError) -> pb.Error:
    return pb.Error(
        errorCode=error.http_status,
        errorMessage=error.message,
        humanMessage=error.human_message,
        status=error.status,
        retryable=error.retryable,
        retryAfterMs=int((error.retry_after or 0) * 1000),
    )


def error_frame(
    request_id: str, error: GatewayError, accumulated: ResponseAccumulator | None = None
) -> pb.ChatResponse:
    """The terminal frame of a failed request; it carries STATUS=FAILED metrics for clients that wait for them."""
    accumulated = accumulated or ResponseAccumulator()
    metrics = [
        *accumulated.timing_metrics(),
        pb.Metric(name="LLM_REQUEST_ID", value=error.provider_request_id or ""),
        pb.Metric(name="STATUS", value="FAILED"),
    ]
    return pb.ChatResponse(
        code=error.http_status,
        success=False,
        requestId=request_id,
        error=error_proto(error),
        metrics=metrics,
        finishReason="cancelled" if error.status == "CANCELLED" else "error",
        final=True,
    )


# The metric on the error frame of a request refused before it ran (nothing was sent upstream): such a request may
# be sent again anywhere. With status UNAVAILABLE (a draining or retiring stream) the Python client does so itself.
NOT_STARTED_METRIC = "NOT_STARTED"


def refusal_frame(request_id: str, error: GatewayError) -> pb.ChatResponse:
    """The terminal frame of a request that will not run: its error frame, marked NOT_STARTED=true."""
    frame = error_frame(request_id, error)
    frame.metrics.append(pb.Metric(name=NOT_STARTED_METRIC, value="true"))
    return frame


def pong_frame(request_id: str) -> bytes:
    """The answer to a PING action: not a request's terminal frame (final=false, no metrics)."""
    return pb.ChatResponse(code=200, success=True, requestId=request_id, pong=True).SerializeToString()


def duplicate_refusal_frame(request_id: str, error: GatewayError) -> pb.ChatResponse:
    """The refusal of a request whose id is already in flight: NOT that id's terminal frame (final=false, no
    metrics), so the request in flight keeps its one terminal frame (docs/protocol.md)."""
    return pb.ChatResponse(
        code=error.http_status, success=False, requestId=request_id, error=error_proto(error), finishReason="error"
    )
