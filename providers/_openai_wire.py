"""The OpenAI chat-completions wire format, shared by the `openai` and `azure` adapters.

Three mappings live here, independent of how the SDK client was built: the gateway's `ChatCall` and its
``model.*`` parameters to the arguments of ``chat.completions.create``; the streamed ``ChatCompletionChunk``s
back to gateway events; and the ``openai`` SDK's exceptions to `GatewayError`s (once, by exception type, HTTP
status and the error body's ``code``/``type`` fields, never by message text). Vendor types stay in here.
"""

from __future__ import annotations

import array
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from openai import AsyncStream
from openai.types import CreateEmbeddingResponse
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallParam,
    ChatCompletionToolMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall
from openai.types.completion_usage import CompletionUsage

from integration_api.errors import DeadlineExceeded, GatewayError, Internal, Unavailable, from_http_status
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

# What the SDK lets escape from a call: its own errors, and the JSON error of a stream event that is not JSON.
SDK_ERRORS: tuple[type[Exception], ...] = (openai.OpenAIError, json.JSONDecodeError)

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


async def chat_events(
    open_stream: Callable[[], Awaitable[AsyncStream[ChatCompletionChunk]]],
    translate: Callable[[Exception], GatewayError],
) -> AsyncIterator[ChatEvent]:
    """Gateway events from the chat-completions stream `open_stream` starts, as each chunk arrives.

    This is the hot path, and the only generator between the SDK's stream and the caller: per chunk it only
    reads attributes of the SDK's chunk and yields one event per text or tool-call piece. Chunks with empty
    `choices` (Azure's prompt annotations, the final usage chunk) yield nothing. `open_stream` runs at the first
    iteration, so its validation errors surface there too; SDK errors leave through `translate`.
    """
    finish: str | None = None
    usage: CompletionUsage | None = None
    called_tools = False
    response_id = ""
    try:
        stream = await open_stream()
        # `async with` closes the upstream response when the consumer stops early (aclose, cancellation).
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta is not None:  # Azure's annotation-only choices carry no delta
                        # A refusal (structured outputs) is the reply's text too; read only when there is no content.
                        text = delta.content or delta.refusal
                        if text:
                            yield TextDelta(text)
                        if delta.tool_calls:
                            called_tools = True
                            for call in delta.tool_calls:
                                yield _tool_delta(call)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
                        response_id = chunk.id
    except SDK_ERRORS as exc:
        raise translate(exc) from exc
    if finish is None:
        raise Unavailable("the upstream stream ended before it sent a finish reason")
    request_id = response_request_id(stream.response.headers) or response_id
    yield ChatFinished(_finish_reason(finish, called_tools), _usage(usage), request_id)


def _tool_delta(call: ChoiceDeltaToolCall) -> ToolCallDelta:
    function = call.function
    if function is None:
        return ToolCallDelta(call.index, call.id or "")
    return ToolCallDelta(call.index, call.id or "", function.name or "", function.arguments or "")


def _finish_reason(value: str, called_tools: bool) -> FinishReason:
    return _FINISH.get(value) or ("tool_calls" if called_tools else "stop")


def _usage(usage: CompletionUsage | None) -> Usage:
    if usage is None:  # a compatible server that ignores stream_options.include_usage
        return Usage()
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


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


def gateway_error(exc: Exception, vendor: str, secret: str) -> GatewayError:
    """The GatewayError for an exception the SDK raised; `secret` is scrubbed from any upstream text."""
    if isinstance(exc, openai.APITimeoutError):
        return DeadlineExceeded(f"{vendor} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "connection error"
        return Unavailable(f"could not reach {vendor} or the connection broke ({cause})")
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, vendor, secret)
    if isinstance(exc, openai.APIResponseValidationError):
        return Unavailable(f"{vendor} sent a response that does not match its API")
    if isinstance(exc, openai.APIError):
        return _stream_error(exc, vendor, secret)
    if isinstance(exc, json.JSONDecodeError):
        return Unavailable(f"{vendor} sent a stream event that is not valid JSON")
    return Internal(f"the {vendor} client failed: {type(exc).__name__}")


def _status_error(exc: openai.APIStatusError, vendor: str, secret: str) -> GatewayError:
    headers = exc.response.headers
    message = f"{vendor} returned HTTP {exc.status_code}: {_body_message(exc, secret)}"
    return from_http_status(
        exc.status_code,
        message,
        retry_after=retry_after(headers),
        provider_request_id=response_request_id(headers) or None,
    )


def _stream_error(exc: openai.APIError, vendor: str, secret: str) -> GatewayError:
    """An error event inside a stream: its body stands in for the HTTP status it does not have."""
    status = _status_of_body(exc.body)
    message = f"{vendor} sent an error event: {_body_message(exc, secret)}"
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


def _body_message(exc: openai.APIError, secret: str) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) and message else exc.message
    # Some vendors echo (part of) the key in 401 messages; never pass the key on.
    return text.replace(secret, "[redacted]") if secret else text


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The upstream's retry advice in seconds: retry-after-ms (Azure), else retry-after (seconds or a date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
