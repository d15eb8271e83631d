"""The `cohere` provider: Cohere's v2 API (chat, embed, rerank) through the official `cohere` SDK.

Credential: ``key`` (required) and optionally ``base_url`` (honoured only when the server's allowlist permits it).
Chat streams ``/v2/chat``: named events (message-start, content-delta, tool-plan-delta, tool-call-start/-delta/-end,
citations, message-end with the finish reason and usage). The tool plan, the text the model writes before it
calls tools, is forwarded as reply text and sent back as the assistant turn's ``tool_plan``. Embedding is
``/v2/embed`` (float vectors), Reranking ``/v2/rerank``, VerifyCredential a one-model page of ``/v1/models``.
SDK retries and stream reconnection are off on every call; errors are mapped once, here, by type and status.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import cohere
import httpx
from cohere.core import ApiError, ParsingError
from cohere.core.request_options import RequestOptions
from cohere.v2.types import v2chat_stream_response as events

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
    EmbeddingCall,
    EmbeddingResult,
    EmbeddingVector,
    FinishReason,
    RerankCall,
    RerankResult,
    RerankScore,
    SystemMessage,
    TextDelta,
    ToolCallDelta,
    ToolMessage,
    ToolSpec,
    Usage,
)

NAME = "cohere"
DEFAULT_BASE_URL = "https://api.cohere.com"
DEFAULT_CHAT_MODEL = "command-a-03-2025"
DEFAULT_EMBEDDING_MODEL = "embed-english-v3.0"
DEFAULT_RERANK_MODEL = "rerank-english-v3.0"
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
TOOL_CHOICES = {"auto": None, "required": "REQUIRED", "none": "NONE"}
# Every call: no SDK retries (the gateway's wrapper retries) and no SSE reconnection.
REQUEST_OPTIONS = RequestOptions(max_retries=0, stream_reconnection_enabled=False)
SDK_ERRORS: tuple[type[Exception], ...] = (ApiError, ParsingError, httpx.HTTPError)

_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter",  # v1's name for a reply stopped by the safety filter
}
CohereStream = AsyncGenerator[cohere.V2ChatStreamResponse, None]


@dataclass(frozen=True, slots=True)
class CohereClient:
    """The SDK client and the HTTP client it was given; the cache closes the latter on eviction."""

    sdk: cohere.AsyncClientV2
    http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()


class CohereProvider(Provider):
    name = NAME

    def __init__(self, client: CohereClient) -> None:
        self._sdk = client.sdk

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        params = ParameterReader(call.parameters)
        model = params.string("model.name") or DEFAULT_CHAT_MODEL
        options = chat_options(params)
        params.reject_unused(NAME)
        if call.tools:
            options["tools"] = chat_tools(call.tools)
        stream = cast(
            CohereStream,
            self._sdk.chat_stream(
                model=model, messages=chat_messages(call.messages), request_options=REQUEST_OPTIONS, **options
            ),
        )
        # aclosing: closing this generator early closes the SDK's, which closes the upstream response.
        with self._mapped_errors():
            async with contextlib.aclosing(stream):
                async for event in chat_events(stream):
                    yield event

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        params = ParameterReader(call.parameters)
        options: dict[str, Any] = {"model": params.string("model.name") or DEFAULT_EMBEDDING_MODEL}
        options["input_type"] = params.choice("model.input_type", INPUT_TYPES) or "search_document"
        if (dimensions := params.integer("model.dimensions")) is not None:
            options["output_dimension"] = dimensions
        params.reject_unused(NAME)
        keys = sorted(call.inputs)
        if not keys:
            raise InvalidArgument("the embedding request has no content")
        texts = [call.inputs[key] for key in keys]
        with self._mapped_errors():
            response = await self._sdk.embed(
                texts=texts, embedding_types=["float"], request_options=REQUEST_OPTIONS, **options
            )
        vectors = response.embeddings.float_ or []
        if len(vectors) != len(keys):
            raise Unavailable(f"cohere returned {len(vectors)} embeddings for {len(keys)} inputs")
        billed = response.meta.billed_units if response.meta is not None else None
        tokens = int(billed.input_tokens or 0) if billed is not None else 0
        return EmbeddingResult(
            tuple(EmbeddingVector(k, tuple(v)) for k, v in zip(keys, vectors, strict=True)), Usage(tokens)
        )

    async def rerank(self, call: RerankCall) -> RerankResult:
        params = ParameterReader(call.parameters)
        model = params.string("model.name") or DEFAULT_RERANK_MODEL
        top_n = params.integer("model.top_n")
        params.reject_unused(NAME)
        keys = sorted(call.documents)
        if not keys:
            raise InvalidArgument("the reranking request has no documents")
        options: dict[str, Any] = {} if top_n is None else {"top_n": top_n}
        documents = [call.documents[key] for key in keys]
        with self._mapped_errors():
            response = await self._sdk.rerank(
                model=model, query=call.query, documents=documents, request_options=REQUEST_OPTIONS, **options
            )
        scores = []
        for result in response.results:
            if not 0 <= result.index < len(keys):
                raise Unavailable(f"cohere ranked document {result.index} of {len(keys)}")
            key = keys[result.index]
            scores.append(RerankScore(key, call.documents[key], result.relevance_score))
        return RerankResult(tuple(scores))

    async def verify_credential(self) -> str:
        with self._mapped_errors():
            await self._sdk.models.list(page_size=1, request_options=REQUEST_OPTIONS)
        return "cohere credential accepted"

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Translate what the SDK raises into GatewayErrors, once, at this edge."""
        try:
            yield
        except SDK_ERRORS as exc:
            raise gateway_error(exc) from exc


# --- request ---------------------------------------------------------------------------------------------------


def chat_options(params: ParameterReader) -> dict[str, Any]:
    """The optional `chat_stream` arguments, from every `model.*` parameter Cohere supports."""
    options: dict[str, Any] = {
        "temperature": params.number("model.temperature"),
        "p": params.number("model.top_p"),
        "k": params.integer("model.top_k"),
        "seed": params.integer("model.seed"),
        "frequency_penalty": params.number("model.frequency_penalty"),
        "presence_penalty": params.number("model.presence_penalty"),
        "stop_sequences": params.string_list("model.stop") or None,
    }
    max_completion = params.integer("model.max_completion_tokens")
    options["max_tokens"] = max_completion if max_completion is not None else params.integer("model.max_tokens")
    choice = params.choice("model.tool_choice", TOOL_CHOICES)
    options["tool_choice"] = TOOL_CHOICES[choice] if choice is not None else None
    options["response_format"] = _response_format(params.json_object("model.response_format"))
    return {name: value for name, value in options.items() if value is not None}


def _response_format(value: Mapping[str, Any] | None) -> cohere.ResponseFormatV2 | None:
    """Cohere's response format from the OpenAI-style one clients send (json_schema: {"name", "schema"})."""
    if value is None:
        return None
    kind = value.get("type")
    if kind == "text":
        return cohere.TextResponseFormatV2()
    if kind == "json_object":
        schema = value.get("json_schema") or value.get("schema")
        return cohere.JsonObjectResponseFormatV2(json_schema=schema if isinstance(schema, dict) else None)
    if kind == "json_schema":
        wrapper = value.get("json_schema")
        schema = wrapper.get("schema", wrapper) if isinstance(wrapper, dict) else None
        if not isinstance(schema, dict):
            raise InvalidArgument("response_format json_schema needs a 'json_schema' object with a 'schema'")
        return cohere.JsonObjectResponseFormatV2(json_schema=schema)
    raise InvalidArgument("cohere supports response_format types text, json_object and json_schema")


def chat_messages(messages: Iterable[ChatMessage]) -> list[cohere.ChatMessageV2]:
    """The conversation as Cohere v2 messages (a tool message becomes one message per result)."""
    out: list[cohere.ChatMessageV2] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            out.extend(
                cohere.ToolChatMessageV2(tool_call_id=result.call_id, content=result.content)
                for result in message.results
            )
        elif isinstance(message, AssistantMessage):
            out.append(_assistant_message(message))
        elif isinstance(message, SystemMessage):
            out.append(cohere.SystemChatMessageV2(content=message.content))
        else:
            out.append(cohere.UserChatMessageV2(content=message.content))
    return out


def _assistant_message(message: AssistantMessage) -> cohere.AssistantChatMessageV2:
    if not message.tool_calls:
        return cohere.AssistantChatMessageV2(content=message.text)
    calls = [
        cohere.ToolCallV2(
            id=call.id,
            type="function",
            function=cohere.ToolCallV2Function(name=call.name, arguments=call.arguments or "{}"),
        )
        for call in message.tool_calls
    ]
    # Text written before tool calls is Cohere's tool plan (we forwarded it as text when it streamed).
    return cohere.AssistantChatMessageV2(tool_calls=calls, tool_plan=message.text or None)


def chat_tools(tools: Sequence[ToolSpec]) -> list[cohere.ToolV2]:
    return [
        cohere.ToolV2(
            type="function",
            function=cohere.ToolV2Function(
                name=tool.name,
                description=tool.description or None,
                parameters=dict(tool.parameters) or {"type": "object"},
            ),
        )
        for tool in tools
    ]


# --- streamed response -----------------------------------------------------------------------------------------


@dataclass
class _StreamState:
    message_id: str = ""
    tool_indexes: dict[int, int] = field(default_factory=dict)  # the event's index -> ours (0, 1, ...)
    end: cohere.ChatMessageEndEventDelta | None = None

    def tool_index(self, event_index: int | None, *, new: bool) -> int:
        """Our index of a tool call: a new one on tool-call-start, else the one its start event was given."""
        if new:
            key = len(self.tool_indexes) if event_index is None else event_index
            self.tool_indexes[key] = len(self.tool_indexes)
            return self.tool_indexes[key]
        if event_index is not None and event_index in self.tool_indexes:
            return self.tool_indexes[event_index]
        return max(len(self.tool_indexes) - 1, 0)


async def chat_events(stream: AsyncIterator[cohere.V2ChatStreamResponse]) -> AsyncIterator[ChatEvent]:
    """Gateway events from a Cohere v2 chat stream, as each event arrives."""
    state = _StreamState()
    async for event in stream:
        delta = _delta(event, state)
        if delta is not None:
            yield delta
        if state.end is not None:
            break
    yield _finished(state)


def _delta(event: cohere.V2ChatStreamResponse, state: _StreamState) -> ChatEvent | None:
    """The gateway event one stream event carries, if any (the start and end events update `state`)."""
    if isinstance(event, events.ContentDeltaV2ChatStreamResponse):
        content = event.delta.message.content if event.delta and event.delta.message else None
        return TextDelta(content.text) if content is not None and content.text else None
    if isinstance(event, events.ToolPlanDeltaV2ChatStreamResponse):
        plan = event.delta.message.tool_plan if event.delta and event.delta.message else None
        return TextDelta(plan) if plan else None
    if isinstance(event, events.ToolCallStartV2ChatStreamResponse):
        return _tool_call_start(event, state)
    if isinstance(event, events.ToolCallDeltaV2ChatStreamResponse):
        calls = event.delta.message.tool_calls if event.delta and event.delta.message else None
        arguments = calls.function.arguments if calls is not None and calls.function is not None else None
        return ToolCallDelta(state.tool_index(event.index, new=False), arguments=arguments) if arguments else None
    if isinstance(event, events.MessageStartV2ChatStreamResponse):
        state.message_id = event.id or ""
    elif isinstance(event, events.MessageEndV2ChatStreamResponse):
        state.end = event.delta or cohere.ChatMessageEndEventDelta()
    return None


def _tool_call_start(event: events.ToolCallStartV2ChatStreamResponse, state: _StreamState) -> ToolCallDelta:
    call = event.delta.message.tool_calls if event.delta and event.delta.message else None
    function = call.function if call is not None else None
    index = state.tool_index(event.index, new=True)
    if call is None or function is None:
        return ToolCallDelta(index, call.id or "" if call is not None else "")
    return ToolCallDelta(index, call.id or "", function.name or "", function.arguments or "")


def _finished(state: _StreamState) -> ChatFinished:
    end = state.end
    if end is None:
        raise Unavailable("the cohere stream ended before its message-end event")
    reason = str(end.finish_reason or "")
    if reason == "ERROR":
        detail = end.error or "no detail"
        raise Unavailable(f"cohere reported an error while generating: {detail}", provider_request_id=state.message_id)
    if reason == "TIMEOUT":
        raise DeadlineExceeded("cohere timed out while generating", provider_request_id=state.message_id)
    finish = _FINISH.get(reason) or ("tool_calls" if state.tool_indexes else "stop")
    return ChatFinished(finish, _usage(end.usage), state.message_id)


def _usage(usage: cohere.Usage | None) -> Usage:
    counts = (usage.tokens or usage.billed_units) if usage is not None else None
    if counts is None:
        return Usage()
    return Usage(int(counts.input_tokens or 0), int(counts.output_tokens or 0))


# --- errors ----------------------------------------------------------------------------------------------------


def gateway_error(exc: Exception) -> GatewayError:
    """The GatewayError for an exception the SDK let through; upstream text is quoted as is (`scrubbed` takes the
    key out of it)."""
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceeded("cohere did not answer in time")
    if isinstance(exc, httpx.LocalProtocolError):  # the request could not even be written, e.g. a bad header
        return InvalidArgument("the cohere request could not be sent (is the credential's key well-formed?)")
    if isinstance(exc, httpx.HTTPError):
        return Unavailable(f"could not reach cohere or the connection broke ({type(exc).__name__})")
    assert isinstance(exc, ApiError | ParsingError)
    status = exc.status_code or 0
    body = exc.body if isinstance(exc.body, dict) else {}
    request_id = body.get("id") if isinstance(body.get("id"), str) else None
    if status < 400:  # a success status with a body the SDK could not read
        return Unavailable(f"cohere answered HTTP {status} with a body that could not be read")
    message = body.get("message") if isinstance(body.get("message"), str) else f"HTTP {status}"
    return from_http_status(
        status,
        f"cohere answered HTTP {status}: {message}",
        retry_after=retry_after(exc.headers or {}),
        provider_request_id=request_id,
    )


# --- construction ----------------------------------------------------------------------------------------------


def build_client(key: str, base_url: str, settings: Settings) -> CohereClient:
    """An SDK client with retries off and the gateway's connect/read timeouts (on the HTTP client it is given)."""
    http = httpx.AsyncClient(
        # Never follow a redirect: an allowed base URL answering 307 to another host would get it the key.
        timeout=httpx.Timeout(settings.idle_timeout_s, connect=settings.connect_timeout_s),
        follow_redirects=False,
    )
    sdk = cohere.AsyncClientV2(
        api_key=key, base_url=base_url, max_retries=0, httpx_client=http, log_warning_experimental_features=False
    )
    return CohereClient(sdk, http)


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    base_url = (resolve_base_url(NAME, credential, env) or DEFAULT_BASE_URL).rstrip("/")
    client = env.clients.get_or_create(
        credential_digest(NAME, credential, base_url), lambda: build_client(key, base_url, env.settings)
    )
    return scrubbed(CohereProvider(client), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, CHAT_RPCS | {"Embedding", "Reranking"}, "Cohere v2 chat, embed and rerank")
