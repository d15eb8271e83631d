"""The OpenAI chat-completions wire format, shared by the `openai` and `azure` adapters.

Three mappings live here, independent of how the SDK client was built: the gateway's `ChatCall` and its
``model.*`` parameters to the arguments of ``chat.completions.create``; the streamed chat-completion chunks
back to gateway events; and the ``openai`` SDK's (and its transport's) exceptions to `GatewayError`s (once, by
exception type, HTTP status and the error body's ``code``/``type`` fields, never by message text). Vendor
types stay in here.

The stream is the hot path: `providers._openai_transport` sends the request (the SDK's, or its replay), and the
body's SSE bytes are read here with `providers._sse` and orjson. The SDK's own stream reader builds a pydantic
object per chunk, which costs more CPU than everything else in a request together.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp
import httpx2
import openai
import orjson
from openai.types import CreateEmbeddingResponse
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallParam,
    ChatCompletionToolMessageParam,
)

from integration_api.errors import DeadlineExceeded, GatewayError, Internal, Unavailable, from_http_status
from providers._http import retry_after
from providers._openai_transport import UpstreamStream
from providers._sse import SSEDecoder, SSEError
from providers.parameters import ParameterReader
from providers.types import (
    AssistantMessage,
    ChatEvent,
    ChatFinished,
    ChatMessage,
    EmbeddingResult,
    EmbeddingVector,
    FinishReason,
    SystemMessage,
    TextDelta,
    ToolCallDelta,
    ToolMessage,
    ToolSpec,
    Usage,
)

# What may escape from a call: the SDK's own errors, aiohttp's that its aiohttp transport lets through (protocol
# errors) and, while the adapter reads a stream's body itself, the transport's errors, the SSE decoder's and the
# JSON error of an event that is not JSON.
SDK_ERRORS: tuple[type[Exception], ...] = (
    openai.OpenAIError,
    aiohttp.ClientError,
    httpx2.RequestError,
    SSEError,
    json.JSONDecodeError,
)

TOOL_CHOICES = ("auto", "required", "none")
ENCODING_FORMATS = ("float", "base64")
_NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_INTEGERS = ("max_completion_tokens", "max_tokens", "seed")
_STRINGS = ("user", "reasoning_effort")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the pre-tools name some compatible servers still send
    "content_filter": "content_filter",
}

# In-stream error events carry no HTTP status: these body fields stand in for one. `code` is more specific than
# `type` (OpenAI sends type "invalid_request_error" with code "invalid_api_key"); Azure puts its codes in `code`.
_STATUS_BY_CODE = {
    "invalid_api_key": 401,
    "model_not_found": 404,
    "DeploymentNotFound": 404,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "content_filter": 400,
    "InternalServerError": 500,
    "server_error": 500,
    "ServiceUnavailable": 503,
}
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "request_forbidden": 403,
    "not_found_error": 404,
    "requests": 429,
    "tokens": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "service_unavailable": 503,
    "overloaded_error": 529,
}


# --- request ---------------------------------------------------------------------------------------------------


def chat_options(params: ParameterReader) -> dict[str, Any]:
    """The optional `chat.completions.create` arguments, read from every `model.*` parameter it supports."""
    options: dict[str, Any] = {}
    for name in _NUMBERS:
        options[name] = params.number(f"model.{name}")
    for name in _INTEGERS:
        options[name] = params.integer(f"model.{name}")
    for name in _STRINGS:
        options[name] = params.string(f"model.{name}")
    options["stop"] = params.string_list("model.stop") or None
    options["tool_choice"] = params.choice("model.tool_choice", TOOL_CHOICES)
    options["response_format"] = params.json_object("model.response_format")
    return {name: value for name, value in options.items() if value is not None}


def chat_messages(messages: Iterable[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """The conversation as chat-completions messages (a tool message becomes one message per result)."""
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            out.extend(
                ChatCompletionToolMessageParam(role="tool", tool_call_id=result.call_id, content=result.content)
                for result in message.results
            )
        elif isinstance(message, AssistantMessage):
            out.append(_assistant_message(message))
        elif isinstance(message, SystemMessage):
            out.append({"role": "system", "content": message.content})
        else:
            out.append({"role": "user", "content": message.content})
    return out


def _assistant_message(message: AssistantMessage) -> ChatCompletionAssistantMessageParam:
    # A turn that only calls tools has null content, as the API itself returns it.
    out = ChatCompletionAssistantMessageParam(role="assistant", content=message.text or None)
    if message.tool_calls:
        out["tool_calls"] = [
            ChatCompletionMessageToolCallParam(
                id=call.id, type="function", function={"name": call.name, "arguments": call.arguments or "{}"}
            )
            for call in message.tool_calls
        ]
    return out


def chat_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters) or {"type": "object"}}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


# --- streamed response -----------------------------------------------------------------------------------------

# After [DONE] the rest of the body (the chunked-encoding terminator, normally already received) is read so that
# the connection goes back to the pool instead of being closed; a server that keeps talking gets this long.
_DRAIN_TIMEOUT_S = 0.1


async def chat_events(
    open_stream: Callable[[], Awaitable[UpstreamStream]], translate: Callable[[Exception], GatewayError]
) -> AsyncGenerator[ChatEvent, None]:
    """Gateway events from the chat-completions stream `open_stream` starts, as each network read arrives.

    This is the hot path. `open_stream` sends the request (`providers._openai_transport`: the SDK's, or its
    replay) and returns the 2xx answer with its body unread, or raises the SDK's typed error. The body's SSE
    bytes are decoded here (`providers._sse`) and each event's JSON read with orjson straight into gateway
    events, with none of the SDK's per-chunk pydantic objects; every event a read completes is yielded at once.
    `open_stream` runs at the first iteration, so its validation errors surface there too; SDK, transport and
    decoding errors leave through `translate`. Closing the generator early (aclose, cancellation) closes the
    upstream response.
    """
    try:
        stream = await open_stream()
        reader = ChunkReader(stream)
        decoder = SSEDecoder()
        # `aclosing` releases the upstream response when the consumer stops early (aclose, cancellation).
        async with aclosing(stream), aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                for sse in decoder.feed(chunk):
                    for event in reader.read(sse.data):
                        yield event
                if reader.done:
                    await _drain(chunks)
                    break
            else:
                for sse in decoder.flush():
                    for event in reader.read(sse.data):
                        yield event
        finished = reader.finished(response_request_id(stream.headers))
    except SDK_ERRORS as exc:
        raise translate(exc) from exc
    yield finished


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] to the end of the body, for a moment at most (see `_DRAIN_TIMEOUT_S`)."""
    with contextlib.suppress(TimeoutError, httpx2.RequestError, aiohttp.ClientError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in chunks:
                pass


class ChunkReader:
    """One stream's chat-completion chunks (JSON bytes) read into gateway events, and what the end needs.

    Chunks with empty ``choices`` (Azure's prompt annotations, the final usage chunk) yield nothing; a chunk
    with an ``error`` member raises the SDK's `openai.APIError`, as the SDK itself does, and a chunk that is
    JSON of the wrong shape raises `openai.APIResponseValidationError`, so `gateway_error` maps both.
    """

    __slots__ = ("called_tools", "done", "finish", "response_id", "stream", "usage")

    def __init__(self, stream: UpstreamStream) -> None:
        self.stream = stream  # the upstream answer, for the SDK errors raised from its events
        self.done = False  # [DONE] was read: what follows is ignored
        self.finish: str | None = None
        self.usage: object = None
        self.called_tools = False
        self.response_id = ""

    def read(self, data: bytes) -> Sequence[ChatEvent]:
        """The events of one SSE data payload."""
        if self.done or not data:
            return ()
        if data.startswith(b"[DONE]"):
            self.done = True
            return ()
        chunk = orjson.loads(data)
        try:
            return self._events(chunk)
        except (AttributeError, TypeError, KeyError) as exc:
            raise openai.APIResponseValidationError(
                self.stream.sdk_response(), chunk, message=f"a stream chunk does not match the API ({exc})"
            ) from exc

    def _events(self, chunk: Any) -> list[ChatEvent]:
        error = chunk.get("error")
        if error:
            raise _error_event(error, self.stream.sdk_response().request)
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = usage
        events: list[ChatEvent] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if delta:  # Azure's annotation-only choices carry no delta
                self._delta(delta, events)
            finish = choice.get("finish_reason")
            if finish is not None:
                self.finish = _text(finish)
                self.response_id = _text(chunk.get("id"))
        return events

    def _delta(self, delta: Any, events: list[ChatEvent]) -> None:
        # A refusal (structured outputs) is the reply's text too; read only when there is no content.
        text = delta.get("content") or delta.get("refusal")
        if text:
            events.append(TextDelta(_text(text)))
        calls = delta.get("tool_calls")
        if calls:
            self.called_tools = True
            events.extend(map(_tool_delta, calls))

    def finished(self, request_id: str) -> ChatFinished:
        """The closing event, once the stream has ended; the upstream's request id wins over the chunks' id."""
        if self.finish is None:
            raise Unavailable("the upstream stream ended before it sent a finish reason")
        reason = _finish_reason(self.finish, self.called_tools)
        return ChatFinished(reason, _usage(self.usage), request_id or self.response_id)


def _error_event(error: object, request: httpx2.Request) -> openai.APIError:
    """The SDK's own exception for an in-stream error event, built as its stream reader builds it."""
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


def _tool_delta(call: Any) -> ToolCallDelta:
    index = call["index"]
    if type(index) is not int:
        raise TypeError(f"tool call index {index!r} is not an integer")
    function = call.get("function")
    if not function:
        return ToolCallDelta(index, _text(call.get("id")))
    return ToolCallDelta(index, _text(call.get("id")), _text(function.get("name")), _text(function.get("arguments")))


def _text(value: object) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _finish_reason(value: str, called_tools: bool) -> FinishReason:
    return _FINISH.get(value) or ("tool_calls" if called_tools else "stop")


def _usage(usage: object) -> Usage:
    if not isinstance(usage, dict):  # None: a compatible server that ignores stream_options.include_usage
        return Usage()
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: object) -> int:
    return value if type(value) is int else 0


def response_request_id(headers: Mapping[str, str]) -> str:
    """The upstream's id of one request (OpenAI: x-request-id; Azure also sends apim-request-id)."""
    return headers.get("x-request-id") or headers.get("apim-request-id") or ""


# --- unary responses -------------------------------------------------------------------------------------------


def embedding_result(response: CreateEmbeddingResponse, keys: Sequence[int]) -> EmbeddingResult:
    """Vectors keyed back to the request's input keys (`keys[i]` is the key of the i-th input sent)."""
    vectors = []
    for item in response.data:
        if not 0 <= item.index < len(keys):
            raise Unavailable(f"the upstream returned an embedding for input {item.index} of {len(keys)}")
        vectors.append(EmbeddingVector(keys[item.index], _floats(item.embedding)))
    usage = response.usage
    return EmbeddingResult(tuple(vectors), Usage(usage.prompt_tokens if usage is not None else 0, 0))


def _floats(embedding: object) -> tuple[float, ...]:
    # With encoding_format=base64 the vector arrives as base64 of little-endian float32s.
    if isinstance(embedding, str):
        return tuple(array.array("f", base64.b64decode(embedding)))
    if isinstance(embedding, list):
        return tuple(float(value) for value in embedding)
    raise Unavailable(f"the upstream returned an embedding of unexpected type {type(embedding).__name__}")


# --- errors ----------------------------------------------------------------------------------------------------


def gateway_error(exc: Exception, vendor: str) -> GatewayError:
    """The GatewayError for an exception the SDK raised; upstream text is quoted as is (`scrubbed` takes keys out)."""
    if isinstance(exc, openai.APIConnectionError | httpx2.RequestError | aiohttp.ClientError):
        return _transport_error(exc, vendor)
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, vendor)
    if isinstance(exc, openai.APIResponseValidationError):
        return Unavailable(f"{vendor} sent a response that does not match its API")
    if isinstance(exc, openai.APIError):
        return _stream_error(exc, vendor)
    if isinstance(exc, SSEError):
        return Unavailable(f"{vendor} sent an event stream that cannot be decoded: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return Unavailable(f"{vendor} sent a stream event that is not valid JSON")
    return Internal(f"the {vendor} client failed: {type(exc).__name__}")


def _transport_error(exc: Exception, vendor: str) -> GatewayError:
    """A timeout or a broken connection: the SDK's (sending) or the transport's own (reading a stream's body).

    The SDK's aiohttp transport reports every aiohttp connection error (refused, reset, disconnected before the
    answer) as an ``httpx2.ConnectTimeout``, so a "timeout" caused by an aiohttp error that is not a timeout is
    a broken connection; and it lets aiohttp's protocol errors (a malformed status line or chunk) through
    as they are. The message names the root cause's type (e.g. ``ConnectionRefusedError``).
    """
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    broken = any(isinstance(e, aiohttp.ClientError) and not isinstance(e, TimeoutError) for e in chain)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError) and not broken:
        return DeadlineExceeded(f"{vendor} did not answer in time")
    root = chain[-1]
    cause = "connection error" if isinstance(root, openai.OpenAIError) else type(root).__name__
    return Unavailable(f"could not reach {vendor} or the connection broke ({cause})")


def _status_error(exc: openai.APIStatusError, vendor: str) -> GatewayError:
    headers = exc.response.headers
    message = f"{vendor} returned HTTP {exc.status_code}: {_body_message(exc)}"
    return from_http_status(
        exc.status_code,
        message,
        retry_after=retry_after(headers),
        provider_request_id=response_request_id(headers) or None,
    )


def _stream_error(exc: openai.APIError, vendor: str) -> GatewayError:
    """An error event inside a stream: its body stands in for the HTTP status it does not have."""
    status = _status_of_body(exc.body)
    message = f"{vendor} sent an error event: {_body_message(exc)}"
    if status is None:
        return Unavailable(message)
    return from_http_status(status, message)


def _status_of_body(body: object) -> int | None:
    if not isinstance(body, dict):
        return None
    for field in ("status", "code"):  # compatible servers and Azure put a numeric status in one of these
        value = body.get(field)
        if isinstance(value, int | str) and str(value).isdigit() and 400 <= int(value) <= 599:
            return int(value)
    code, kind = body.get("code"), body.get("type")
    if isinstance(code, str) and code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    if isinstance(kind, str) and kind in _STATUS_BY_TYPE:
        return _STATUS_BY_TYPE[kind]
    return None


def _body_message(exc: openai.APIError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else exc.message
