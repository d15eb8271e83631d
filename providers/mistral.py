"""The `mistral` provider: Mistral's chat completions through the official `mistralai` SDK.

Credential: ``key`` (required) and optionally ``base_url`` (honoured only when the server's allowlist permits it).
Chat streams ``/v1/chat/completions``: OpenAI-like ``data:`` chunks ending with ``data: [DONE]``, the usage on the
chunk that carries the finish reason, and each tool call sent whole in one delta. VerifyCredential lists the
models. The SDK's exceptions carry the HTTP status; they are mapped once, here, by type and status.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson
import pydantic
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors
from mistralai.client import models as mistral_models
from mistralai.client.utils import BackoffStrategy, RetryConfig
from mistralai.client.utils.eventstreaming import EventStreamAsync

from integration_api.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidArgument,
    Unavailable,
    from_http_status,
)
from integration_api.settings import Settings
from providers._http import Scrubber, retry_after, scrubbed
from providers.base import CHAT_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.parameters import ParameterReader
from providers.types import (
    AssistantMessage,
    ChatCall,
    ChatEvent,
    ChatFinished,
    ChatMessage,
    FinishReason,
    SystemMessage,
    TextDelta,
    ToolCallDelta,
    ToolMessage,
    ToolSpec,
    Usage,
)

NAME = "mistral"
DEFAULT_BASE_URL = "https://api.mistral.ai"
DEFAULT_CHAT_MODEL = "mistral-small-latest"
# The gateway's tool_choice names -> Mistral's ("any" is Mistral's word for "must call a tool").
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
SDK_ERRORS = (mistral_errors.MistralError, mistral_errors.NoResponseError, httpx2.HTTPError)
# Strategy "none": one attempt, whatever the status (the gateway's wrapper does the retrying).
NO_RETRIES = RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), retry_connection_errors=False)
MessageParam = mistral_models.ChatCompletionStreamRequestMessageTypedDict
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}
# An error object inside a stream carries no HTTP status: its `type` stands in for one.
STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "rate_limited": 429,
    "internal_server_error": 500,
    "service_unavailable": 503,
}


@dataclass(frozen=True, slots=True)
class MistralClient:
    """The SDK client and the HTTP client it was given; the cache closes the latter on eviction."""

    sdk: Mistral
    http: httpx2.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()


class _GatewayTimeouts(httpx2.AsyncBaseTransport):
    """Applies the gateway's connect and read timeouts to every request.

    The SDK stamps one flat timeout (300 s unless told otherwise) on each request, which would replace the
    client's own connect/read split; this transport puts the split back just before the request is sent.
    """

    def __init__(self, timeout: httpx2.Timeout) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._timeout = timeout.as_dict()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions["timeout"] = self._timeout
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class MistralProvider(Provider):
    name = NAME

    def __init__(self, client: MistralClient) -> None:
        self._sdk = client.sdk

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        params = ParameterReader(call.parameters)
        model = params.string("model.name") or DEFAULT_CHAT_MODEL
        options = chat_options(params)
        params.reject_unused(NAME)
        if call.tools:
            options["tools"] = chat_tools(call.tools)
        with self._mapped_errors():
            stream = await self._sdk.chat.stream_async(model=model, messages=chat_messages(call.messages), **options)
            # `async with` closes the upstream response when the consumer stops early (aclose/cancellation).
            async with stream:
                async for event in chat_events(stream):
                    yield event

    async def verify_credential(self) -> str:
        with self._mapped_errors():
            listing = await self._sdk.models.list_async()
        return f"mistral credential accepted ({len(listing.data or [])} models visible)"

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Translate what the SDK raises into GatewayErrors, once, at this edge."""
        try:
            yield
        except SDK_ERRORS as exc:
            raise gateway_error(exc) from exc
        except pydantic.ValidationError as exc:  # the SDK validates the request before sending it
            raise InvalidArgument(f"mistral rejected the request shape: {exc.error_count()} invalid field(s)") from exc


# --- request ---------------------------------------------------------------------------------------------------


def chat_options(params: ParameterReader) -> dict[str, Any]:
    """The optional `chat.stream_async` arguments, from every `model.*` parameter Mistral supports."""
    options: dict[str, Any] = {name: params.number(f"model.{name}") for name in _NUMBERS}
    max_completion = params.integer("model.max_completion_tokens")
    max_tokens = params.integer("model.max_tokens")
    options["max_tokens"] = max_completion if max_completion is not None else max_tokens
    options["stop"] = params.string_list("model.stop") or None
    options["random_seed"] = params.integer("model.seed")
    choice = params.choice("model.tool_choice", TOOL_CHOICES)
    options["tool_choice"] = TOOL_CHOICES[choice] if choice is not None else None
    options["response_format"] = _response_format(params.json_object("model.response_format"))
    return {name: value for name, value in options.items() if value is not None}


def _response_format(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and value.get("type") not in RESPONSE_FORMATS:
        raise InvalidArgument(f"mistral supports response_format types {', '.join(RESPONSE_FORMATS)}")
    return value


def chat_messages(messages: Iterable[ChatMessage]) -> list[MessageParam]:
    """The conversation as Mistral messages (a tool message becomes one message per result)."""
    out: list[MessageParam] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            out.extend(
                mistral_models.ToolMessageTypedDict(
                    role="tool", tool_call_id=result.call_id, name=result.name, content=result.content
                )
                for result in message.results
            )
        elif isinstance(message, AssistantMessage):
            out.append(_assistant_message(message))
        elif isinstance(message, SystemMessage):
            out.append({"role": "system", "content": message.content})
        else:
            out.append({"role": "user", "content": message.content})
    return out


def _assistant_message(message: AssistantMessage) -> mistral_models.AssistantMessageTypedDict:
    out = mistral_models.AssistantMessageTypedDict(role="assistant")
    if message.text or not message.tool_calls:
        out["content"] = message.text
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments or "{}"}}
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


@dataclass
class _ToolCallIndexes:
    """Our tool-call indexes: Mistral sends each call whole and its `index` is not reliably distinct per call."""

    by_id: dict[str, int] = field(default_factory=dict)
    by_vendor_index: dict[int, int] = field(default_factory=dict)

    def delta(self, call: mistral_models.ToolCall) -> ToolCallDelta:
        arguments = call.function.arguments
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        call_id = call.id if call.id and call.id != "null" else ""
        vendor_index = call.index or 0
        if call_id and call_id not in self.by_id:
            index = self.by_id[call_id] = len(self.by_id)
            self.by_vendor_index[vendor_index] = index
            return ToolCallDelta(index, call_id, call.function.name, text)
        # A continuation of a call already started (a server that does split arguments).
        index = self.by_id[call_id] if call_id else self.by_vendor_index.get(vendor_index, max(len(self.by_id) - 1, 0))
        return ToolCallDelta(index, arguments=text)


async def chat_events(stream: EventStreamAsync[mistral_models.CompletionEvent]) -> AsyncIterator[ChatEvent]:
    """Gateway events from a Mistral chat stream, as each chunk arrives."""
    finish: str | None = None
    usage: mistral_models.UsageInfo | None = None
    tools = _ToolCallIndexes()
    chunk_id = ""
    async for event in stream:
        chunk = event.data
        chunk_id = chunk.id
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            for text in _texts(choice.delta.content):
                yield TextDelta(text)
            if isinstance(choice.delta.tool_calls, list):
                for call in choice.delta.tool_calls:
                    yield tools.delta(call)
            if isinstance(choice.finish_reason, str):
                finish = choice.finish_reason
    if finish is None:
        raise Unavailable("the mistral stream ended before it sent a finish reason")
    if finish == "error":
        raise Unavailable("mistral reported an error while generating the reply")
    reason = _FINISH.get(finish) or ("tool_calls" if tools.by_id else "stop")
    request_id = stream.response.headers.get("mistral-correlation-id") or chunk_id
    yield ChatFinished(reason, _usage(usage), request_id)


def _texts(content: object) -> list[str]:
    """The text pieces of a delta's content: a string, or a list of chunks of which only text is the reply."""
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return [chunk.text for chunk in content if isinstance(chunk, mistral_models.TextChunk) and chunk.text]
    return []


def _usage(usage: mistral_models.UsageInfo | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


# --- errors ----------------------------------------------------------------------------------------------------


def gateway_error(exc: Exception) -> GatewayError:
    """The GatewayError for an exception the SDK let through; upstream text is quoted as is (`scrubbed` takes the
    key out of it)."""
    if isinstance(exc, httpx2.TimeoutException):
        return DeadlineExceeded("mistral did not answer in time")
    if isinstance(exc, httpx2.LocalProtocolError):  # the request could not even be written, e.g. a bad header
        return InvalidArgument("the mistral request could not be sent (is the credential's key well-formed?)")
    if isinstance(exc, httpx2.HTTPError | mistral_errors.NoResponseError):
        return Unavailable(f"could not reach mistral or the connection broke ({type(exc).__name__})")
    assert isinstance(exc, mistral_errors.MistralError)
    body = _json(exc.body)
    request_id = exc.headers.get("mistral-correlation-id") or _text(body.get("request_id"))
    if 200 <= exc.status_code < 300:  # a stream event the SDK could not read: an error object, or garbage
        return _stream_error(body.get("data"), request_id)
    message = _text(body.get("message")) or f"HTTP {exc.status_code}"
    return from_http_status(
        exc.status_code,
        f"mistral answered HTTP {exc.status_code}: {message}",
        retry_after=retry_after(exc.headers),
        provider_request_id=request_id or None,
    )


def _stream_error(data: object, request_id: str) -> GatewayError:
    if not isinstance(data, dict) or data.get("object") != "error":
        return Unavailable("mistral sent a stream event that is not a valid chunk")
    status = STATUS_BY_ERROR_TYPE.get(_text(data.get("type")), 500)
    message = _text(data.get("message")) or "error event"
    return from_http_status(status, f"mistral stream error: {message}", provider_request_id=request_id or None)


def _json(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- construction ----------------------------------------------------------------------------------------------


def build_client(key: str, base_url: str, settings: Settings) -> MistralClient:
    """An SDK client with retries off and the gateway's connect/read timeouts."""
    timeout = httpx2.Timeout(settings.idle_timeout_s, connect=settings.connect_timeout_s)
    # Never follow a redirect: an allowed base URL answering 307 to another host would get it the key.
    http = httpx2.AsyncClient(transport=_GatewayTimeouts(timeout), timeout=timeout, follow_redirects=False)
    sdk = Mistral(api_key=key, server_url=base_url, async_client=http, retry_config=NO_RETRIES)
    return MistralClient(sdk, http)


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    # The SDK's paths start with /v1; a base URL given with it would double it.
    base_url = (resolve_base_url(NAME, credential, env) or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
    client = env.clients.get_or_create(
        credential_digest(NAME, credential, base_url), lambda: build_client(key, base_url, env.settings)
    )
    return scrubbed(MistralProvider(client), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, CHAT_RPCS, "Mistral AI chat completions")
