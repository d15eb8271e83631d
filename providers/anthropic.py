"""The `anthropic` provider: Claude through the official `anthropic` SDK and its Messages API.

Credential: ``key`` (required) and optionally ``base_url`` (honoured only when the server's allowlist permits it).
Chat streams ``messages.create(stream=True)`` and maps the raw events as they arrive; VerifyCredential lists the
models. System messages become the ``system`` parameter, assistant tool calls ``tool_use`` blocks and tool results
a user turn of ``tool_result`` blocks; consecutive turns of one role are merged, as the API requires.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import anthropic
import httpx2  # the transport of the `anthropic` SDK; its errors escape a stream being read
import orjson
from anthropic import AsyncAnthropic, AsyncStream, omit
from anthropic.types import (
    AssistantMessageParam,
    MessageDeltaUsage,
    MessageParam,
    MetadataParam,
    RawMessageStreamEvent,
    TextBlockParam,
    ThinkingConfigParam,
    ToolChoiceParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    UserMessageParam,
)
from anthropic.types import Usage as AnthropicUsage

from integration_api.errors import (
    DeadlineExceeded,
    GatewayError,
    Internal,
    InvalidArgument,
    Unavailable,
    from_http_status,
)
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

NAME = "anthropic"
# Passed explicitly so the SDK never picks up ANTHROPIC_BASE_URL from the server's environment.
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-6"
# The API requires max_tokens; this is what a request that names none gets.
DEFAULT_MAX_TOKENS = 4096
TOOL_CHOICES: dict[str, ToolChoiceParam] = {
    "auto": {"type": "auto"}, "required": {"type": "any"}, "any": {"type": "any"}, "none": {"type": "none"},
}  # fmt: skip

_Block: TypeAlias = TextBlockParam | ToolUseBlockParam | ToolResultBlockParam
_Role: TypeAlias = Literal["user", "assistant"]

# What the SDK lets escape from a call or a stream being read.
_SDK_ERRORS: tuple[type[Exception], ...] = (anthropic.AnthropicError, httpx2.HTTPError, json.JSONDecodeError)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}  # fmt: skip
# An `event: error` inside a stream arrives on a 200 response: its error type stands in for the HTTP status.
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "conflict_error": 409, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip


class AnthropicProvider(Provider):
    """A Messages API caller over one ``AsyncAnthropic`` client."""

    name = NAME

    def __init__(self, client: AsyncAnthropic) -> None:
        self._client = client

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        request = build_request(call)
        try:
            stream = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=request.messages,
                stream=True,
                system=request.system if request.system is not None else omit,
                stop_sequences=request.stop_sequences if request.stop_sequences is not None else omit,
                tools=request.tools if request.tools else omit,
                tool_choice=request.tool_choice if request.tool_choice is not None else omit,
                thinking=request.thinking if request.thinking is not None else omit,
                metadata=request.metadata if request.metadata is not None else omit,
                extra_body=request.sampling or None,
            )
            # `async with` closes the upstream response when the consumer stops early (aclose/cancellation).
            async with stream, aclosing(chat_events(stream)) as events:
                async for event in events:
                    yield event
        except _SDK_ERRORS as exc:
            raise gateway_error(exc) from exc

    async def verify_credential(self) -> str:
        try:
            page = await self._client.models.list()
        except _SDK_ERRORS as exc:
            raise gateway_error(exc) from exc
        return f"{NAME} credential accepted ({len(page.data)} models visible)"


# --- request ---------------------------------------------------------------------------------------------------


@dataclass
class AnthropicRequest:
    """The arguments of one ``messages.create`` call (None: not sent)."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: str | None = None
    stop_sequences: list[str] | None = None
    tools: list[ToolParam] = field(default_factory=list)
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingConfigParam | None = None
    metadata: MetadataParam | None = None
    # The sampling knobs the SDK's signature no longer lists (newer models reject them); sent in the body.
    sampling: dict[str, float | int] = field(default_factory=dict)


def build_request(call: ChatCall) -> AnthropicRequest:
    """Map a ChatCall and its ``model.*`` parameters; unsupported parameters are InvalidArgument."""
    params = ParameterReader(call.parameters)
    model = params.string("model.name") or DEFAULT_MODEL
    limit = params.integer("model.max_completion_tokens")
    legacy_limit = params.integer("model.max_tokens")
    thinking = _thinking(params.raw("model.thinking"))
    choice = params.choice("model.tool_choice", TOOL_CHOICES)
    user = params.string("model.user")
    sampling = _sampling(params)
    stop = params.string_list("model.stop") or None
    params.reject_unused(NAME)
    system, messages = chat_messages(call.messages)
    return AnthropicRequest(
        model=model,
        max_tokens=_max_tokens(limit if limit is not None else legacy_limit, thinking),
        messages=messages,
        system=system,
        stop_sequences=stop,
        tools=chat_tools(call.tools),
        tool_choice=TOOL_CHOICES[choice] if choice is not None else None,
        thinking=thinking,
        metadata=MetadataParam(user_id=user) if user else None,
        sampling=sampling,
    )


def _sampling(params: ParameterReader) -> dict[str, float | int]:
    values: dict[str, float | int | None] = {
        "temperature": params.number("model.temperature"),
        "top_p": params.number("model.top_p"),
        "top_k": params.integer("model.top_k"),
    }
    return {name: value for name, value in values.items() if value is not None}


def _max_tokens(limit: int | None, thinking: ThinkingConfigParam | None) -> int:
    if limit is not None:
        # 0 is valid: it only warms the prompt cache.
        if limit < 0:
            raise InvalidArgument(f"the maximum number of tokens cannot be negative, got {limit}")
        return limit
    budget = thinking.get("budget_tokens") if thinking is not None else None
    # The API wants max_tokens above the thinking budget: leave the default room for the answer itself.
    if isinstance(budget, int) and budget >= DEFAULT_MAX_TOKENS:
        return budget + DEFAULT_MAX_TOKENS
    return DEFAULT_MAX_TOKENS


def _thinking(value: object) -> ThinkingConfigParam | None:
    """`model.thinking`: a config object (or its JSON text), a budget in tokens, or a bare type name."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "disabled":
            return {"type": "disabled"}
        if text == "adaptive":
            return {"type": "adaptive"}
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument("parameter 'model.thinking' must be JSON text, a token budget or a type") from exc
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        budget = int(value)
        return {"type": "enabled", "budget_tokens": budget} if budget > 0 else {"type": "disabled"}
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value  # type: ignore[return-value]  # the API validates the rest of the object
    raise InvalidArgument(
        'parameter \'model.thinking\' must be an object like {"type": "enabled", "budget_tokens": 2048} '
        "or a token budget"
    )


def chat_messages(messages: Iterable[ChatMessage]) -> tuple[str | None, list[MessageParam]]:
    """The `system` text and the alternating user/assistant turns (same-role neighbours merged)."""
    system: list[str] = []
    turns: list[tuple[_Role, list[_Block]]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            if message.content:
                system.append(message.content)
            continue
        role, blocks = _turn(message)
        if not blocks:  # the API rejects empty turns and empty text blocks
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return ("\n\n".join(system) or None), [
        AssistantMessageParam(role="assistant", content=blocks)
        if role == "assistant"
        else UserMessageParam(role="user", content=blocks)
        for role, blocks in turns
    ]


def _turn(message: ChatMessage) -> tuple[_Role, list[_Block]]:
    if isinstance(message, ToolMessage):
        results: list[_Block] = [
            ToolResultBlockParam(type="tool_result", tool_use_id=result.call_id, content=result.content)
            for result in message.results
        ]
        return "user", results
    if isinstance(message, AssistantMessage):
        blocks: list[_Block] = [TextBlockParam(type="text", text=message.text)] if message.text else []
        blocks.extend(
            ToolUseBlockParam(type="tool_use", id=call.id, name=call.name, input=_tool_input(call.id, call.arguments))
            for call in message.tool_calls
        )
        return "assistant", blocks
    text = getattr(message, "content", "")
    return "user", [TextBlockParam(type="text", text=text)] if text else []


def _tool_input(call_id: str, arguments: str) -> dict[str, object]:
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"the arguments of tool call {call_id!r} are not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"the arguments of tool call {call_id!r} must be a JSON object")
    return value


def chat_tools(tools: Sequence[ToolSpec]) -> list[ToolParam]:
    out: list[ToolParam] = []
    for tool in tools:
        # The API requires an object schema; a spec without a type is taken as one.
        param = ToolParam(name=tool.name, input_schema={"type": "object", **tool.parameters})
        if tool.description:
            param["description"] = tool.description
        out.append(param)
    return out


# --- streamed response -----------------------------------------------------------------------------------------


@dataclass
class _StreamState:
    """What a stream has said so far: usage, stop reason, and which content blocks are tool calls."""

    message_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    tool_calls: dict[int, int] = field(default_factory=dict)  # content block index -> tool call index

    def apply(self, event: RawMessageStreamEvent) -> ChatEvent | None:
        """Take in one event; return the gateway event it carries, if any."""
        if event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return TextDelta(delta.text) if delta.text else None
            if delta.type == "input_json_delta" and delta.partial_json and event.index in self.tool_calls:
                return ToolCallDelta(self.tool_calls[event.index], arguments=delta.partial_json)
            return None  # thinking, signature and citation deltas are not part of the reply
        if event.type == "content_block_start":
            block = event.content_block
            if block.type != "tool_use":
                return None
            index = self.tool_calls[event.index] = len(self.tool_calls)
            # The input normally streams as deltas; a server that sends it whole at the start is honoured too.
            arguments = orjson.dumps(block.input).decode() if block.input else ""
            return ToolCallDelta(index, block.id, block.name, arguments)
        if event.type == "message_start":
            self.message_id = event.message.id
            self._usage(event.message.usage)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason or ""
            self._usage(event.usage)
        return None

    def _usage(self, usage: AnthropicUsage | MessageDeltaUsage) -> None:
        # message_delta counts are cumulative and may omit input_tokens; the input includes the cache tokens.
        if usage.input_tokens is not None:
            cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
            self.input_tokens = usage.input_tokens + cached
        self.output_tokens = usage.output_tokens

    def finish_reason(self) -> FinishReason:
        return _FINISH.get(self.stop_reason or "") or ("tool_calls" if self.tool_calls else "stop")


async def chat_events(stream: AsyncStream[RawMessageStreamEvent]) -> AsyncGenerator[ChatEvent, None]:
    """Gateway events from a Messages stream, as each event arrives, then one ChatFinished."""
    state = _StreamState()
    async for event in stream:
        if (out := state.apply(event)) is not None:
            yield out
    if state.stop_reason is None:
        raise Unavailable(f"the {NAME} stream ended before the message was complete")
    request_id = stream.response.headers.get("request-id") or state.message_id
    yield ChatFinished(state.finish_reason(), Usage(state.input_tokens, state.output_tokens), request_id)


# --- errors ----------------------------------------------------------------------------------------------------


def gateway_error(exc: Exception) -> GatewayError:
    """The GatewayError for an exception the SDK (or its transport) raised; upstream text is quoted as is (the
    factory's `scrubbed` wrapper takes the key out of it)."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return DeadlineExceeded(f"{NAME} did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ if isinstance(exc, anthropic.APIConnectionError) else exc
        return Unavailable(f"could not reach {NAME} or the connection broke ({type(cause).__name__})")
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
        return Unavailable(f"{NAME} sent a response or stream event that does not match its API")
    return Internal(f"the {NAME} client failed: {type(exc).__name__}")


def _status_error(exc: anthropic.APIStatusError) -> GatewayError:
    request_id = exc.request_id or None
    text = exc.api_message or exc.message
    if exc.status_code < 400:  # an `event: error` inside a stream that started with 200
        kind = exc.type or "api_error"
        message = f"{NAME} sent an error event ({kind}): {text}"
        return from_http_status(_STATUS_BY_ERROR_TYPE.get(kind, 500), message, provider_request_id=request_id)
    message = f"{NAME} returned HTTP {exc.status_code} ({exc.type or 'error'}): {text}"
    return from_http_status(
        exc.status_code, message, retry_after=retry_after(exc.response.headers), provider_request_id=request_id
    )


# --- factory ---------------------------------------------------------------------------------------------------


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    base_url = resolve_base_url(NAME, credential, env) or DEFAULT_BASE_URL
    settings = env.settings

    def create() -> AsyncAnthropic:
        # The idle timeout bounds every read as a backstop; retries belong to the gateway's wrapper.
        timeout = anthropic.Timeout(settings.idle_timeout_s, connect=settings.connect_timeout_s)
        # The SDK's own client follows redirects: a base URL answering 307 to another host would get it the key.
        http = anthropic.DefaultAsyncHttpxClient(timeout=timeout, follow_redirects=False)
        return AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0, timeout=timeout, http_client=http)

    client = env.clients.get_or_create(credential_digest(NAME, credential, base_url), create)
    return scrubbed(AnthropicProvider(client), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, CHAT_RPCS, "Anthropic Claude (Messages API)")
