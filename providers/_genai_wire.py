"""The Gemini ``generateContent`` wire format, shared by the `gemini` and `vertexai` adapters (``google-genai``).

Three mappings live here, independent of how the SDK client authenticates: the gateway's `ChatCall` and its
``model.*`` parameters to ``contents`` and a ``GenerateContentConfig``; the streamed ``GenerateContentResponse``s
back to gateway events (and the closing of the HTTP response under them); and embedding answers back to vectors.
Vendor types stay in here and in the adapter modules, which also map the SDK's exceptions (``providers.gemini``).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
from google.genai import types

from integration_api.errors import InvalidArgument, Unavailable
from providers.parameters import ParameterReader
from providers.types import (
    AssistantMessage,
    ChatEvent,
    ChatFinished,
    ChatMessage,
    EmbeddingResult,
    EmbeddingVector,
    FinishReason,
    JsonValue,
    SystemMessage,
    TextDelta,
    ToolCallDelta,
    ToolMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

TOOL_CHOICES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
# Gemini 3 refuses a replayed function call that lacks the thought signature the model attached to it. The
# gateway's protocol cannot carry signatures, so replayed calls carry the value Google documents for this case.
SKIP_THOUGHT_SIGNATURE = base64.urlsafe_b64decode("skip_thought_signature_validator")

_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
     "IMAGE_RECITATION", "MODEL_ARMOR"}
)  # fmt: skip


# --- request ---------------------------------------------------------------------------------------------------


def generate_config(params: ParameterReader, *, has_tools: bool) -> types.GenerateContentConfig:
    """The ``GenerateContentConfig`` for every ``model.*`` parameter Gemini supports (each one is read)."""
    options: dict[str, Any] = {
        "temperature": params.number("model.temperature"),
        "top_p": params.number("model.top_p"),
        "top_k": params.integer("model.top_k"),
        "max_output_tokens": _max_tokens(params),
        "stop_sequences": params.string_list("model.stop") or None,
        "seed": params.integer("model.seed"),
        "presence_penalty": params.number("model.presence_penalty"),
        "frequency_penalty": params.number("model.frequency_penalty"),
        "thinking_config": _thinking_config(params),
        "tool_config": _tool_config(params, has_tools),
        **_response_format(params),
        # The SDK would otherwise run Python tools itself and follow continuation tokens with extra requests.
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
        "automatic_continuation": False,
    }
    return types.GenerateContentConfig(**{name: value for name, value in options.items() if value is not None})


def _max_tokens(params: ParameterReader) -> int | None:
    completion = params.integer("model.max_completion_tokens")
    legacy = params.integer("model.max_tokens")
    return completion if completion is not None else legacy


def _tool_config(params: ParameterReader, has_tools: bool) -> types.ToolConfig | None:
    choice = params.choice("model.tool_choice", TOOL_CHOICES)
    if choice is None or not has_tools:  # a tool choice means nothing without tools
        return None
    mode = types.FunctionCallingConfigMode(TOOL_CHOICES[choice])
    return types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=mode))


def _response_format(params: ParameterReader) -> dict[str, Any]:
    response_format = params.json_object("model.response_format")
    if response_format is None:
        return {}
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_mime_type": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidArgument("model.response_format of type json_schema needs json_schema.schema, an object")
        # responseJsonSchema takes JSON Schema as is; responseSchema would need it converted to OpenAPI's subset.
        return {"response_mime_type": "application/json", "response_json_schema": schema}
    raise InvalidArgument(f"model.response_format type must be text, json_object or json_schema; got {kind!r}")


def _thinking_config(params: ParameterReader) -> types.ThinkingConfig | None:
    thinking = params.raw("model.thinking")
    effort = params.choice("model.reasoning_effort", REASONING_EFFORTS)
    if thinking is not None and effort is not None:
        raise InvalidArgument("give model.thinking (a budget) or model.reasoning_effort (a level), not both")
    if effort == "none":
        return types.ThinkingConfig(thinking_budget=0)
    if effort is not None:
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel(effort.upper()))
    if thinking is None:
        return None
    return types.ThinkingConfig(thinking_budget=_thinking_budget(thinking))


def _thinking_budget(value: JsonValue) -> int:
    """A thinking budget in tokens (-1: the model decides, 0: off) from a number, a boolean or an object."""
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)  # "1024", "true" and '{"budget_tokens": 1024}' all arrive as text
    if isinstance(value, bool):
        return -1 if value else 0
    if isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get("type") == "disabled":
            return 0
        budget = value.get("budget_tokens", value.get("thinking_budget"))
        if budget is None:
            return -1
        if isinstance(budget, int) and not isinstance(budget, bool):
            return budget
    raise InvalidArgument('model.thinking must be a token budget, a boolean or {"budget_tokens": N}')


def contents(messages: Iterable[ChatMessage]) -> tuple[types.Content | None, list[types.Content]]:
    """The system instruction (every system message) and the conversation as Gemini ``contents``."""
    system: list[types.Part] = []
    turns: list[tuple[str, list[types.Part]]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for results that do not repeat the name
    for message in messages:
        if isinstance(message, SystemMessage):
            system.extend(_text_parts(message.content))
            continue
        role, parts = _turn(message, names)
        if not parts:
            continue
        if turns and turns[-1][0] == role:  # Gemini wants turns to alternate: e.g. tool results + the next question
            turns[-1][1].extend(parts)
        else:
            turns.append((role, parts))
    instruction = types.Content(parts=system) if system else None
    return instruction, [types.Content(role=role, parts=parts) for role, parts in turns]


def _turn(message: ChatMessage, names: dict[str, str]) -> tuple[str, list[types.Part]]:
    if isinstance(message, AssistantMessage):
        parts = _text_parts(message.text)
        for position, call in enumerate(message.tool_calls):
            names[call.id] = call.name
            function_call = types.FunctionCall(id=call.id or None, name=call.name, args=_arguments(call.arguments))
            # Signatures go on the first call of a step only, as the model itself returns them.
            signature = SKIP_THOUGHT_SIGNATURE if position == 0 else None
            parts.append(types.Part(function_call=function_call, thought_signature=signature))
        return "model", parts
    if isinstance(message, ToolMessage):
        return "user", [
            _function_response(result.call_id, result.name, result.content, names) for result in message.results
        ]
    if isinstance(message, UserMessage):
        return "user", _text_parts(message.content)
    raise InvalidArgument(f"unsupported message type {type(message).__name__}")


def _text_parts(text: str) -> list[types.Part]:
    return [types.Part(text=text)] if text else []  # Gemini refuses empty text parts


def _arguments(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"tool call arguments must be JSON text: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("tool call arguments must be a JSON object for Gemini")
    return value


def _function_response(call_id: str, name: str, content: str, names: Mapping[str, str]) -> types.Part:
    function_name = name or names.get(call_id, "")
    if not function_name:
        raise InvalidArgument(f"the result of tool call {call_id!r} needs the function's name for Gemini")
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        value = None
    # A JSON object is the response itself; anything else goes under "output", the key Google documents.
    response = value if isinstance(value, dict) else {"output": content}
    return types.Part(
        function_response=types.FunctionResponse(id=call_id or None, name=function_name, response=response)
    )


def tools(specs: Sequence[ToolSpec]) -> list[types.Tool]:
    declarations = [
        types.FunctionDeclaration(
            name=spec.name,
            description=spec.description or None,
            # parametersJsonSchema takes JSON Schema as is (additionalProperties, $defs...).
            parameters_json_schema=dict(spec.parameters) or None,
        )
        for spec in specs
    ]
    return [types.Tool(function_declarations=declarations)]


# --- streamed response -----------------------------------------------------------------------------------------


@dataclass
class _StreamState:
    calls: int = 0
    finish: str | None = None
    blocked: bool = False
    usage: types.GenerateContentResponseUsageMetadata | None = None
    response_id: str = ""

    def observe(self, chunk: types.GenerateContentResponse) -> list[ChatEvent]:
        """The events of one chunk; records its usage, id and finish reason."""
        self.response_id = chunk.response_id or self.response_id
        if chunk.usage_metadata is not None:  # each chunk's usage is the running total: the last one wins
            self.usage = chunk.usage_metadata
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self.blocked = True  # the prompt itself was blocked: no candidates follow
        if not chunk.candidates:
            return []
        candidate = chunk.candidates[0]  # candidate_count is never set, so there is exactly one
        events = self._events(candidate.content.parts if candidate.content is not None else None)
        if candidate.finish_reason is not None:
            self.finish = str(getattr(candidate.finish_reason, "value", candidate.finish_reason))
        return events

    def _events(self, parts: list[types.Part] | None) -> list[ChatEvent]:
        events: list[ChatEvent] = []
        for part in parts or ():
            if part.thought:  # thought summaries are only sent when asked for; never part of the answer
                continue
            if part.text:
                events.append(TextDelta(part.text))
            call = part.function_call
            if call is not None:  # Gemini sends each call whole: one delta carries all its arguments
                arguments = json.dumps(call.args or {}, ensure_ascii=False)
                events.append(ToolCallDelta(self.calls, call.id or f"call_{self.calls}", call.name or "", arguments))
                self.calls += 1
        return events

    def finished(self) -> ChatFinished:
        if self.finish is None and not self.blocked:
            raise Unavailable("the upstream stream ended before it sent a finish reason")
        return ChatFinished(self._finish_reason(), self._usage(), self.response_id)

    def _finish_reason(self) -> FinishReason:
        if self.blocked or self.finish in _FILTERED:
            return "content_filter"
        if self.finish == "MAX_TOKENS":
            return "length"
        return "tool_calls" if self.calls else "stop"

    def _usage(self) -> Usage:
        usage = self.usage
        if usage is None:
            return Usage()
        output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)  # thinking is billed as output
        return Usage(usage.prompt_token_count or 0, output)


# The HTTP responses opened by the stream being started in this context (see `chat_events`).
_OPENED: ContextVar[list[httpx.Response] | None] = ContextVar("genai_opened_responses", default=None)


async def record_response(response: httpx.Response) -> None:
    """An httpx response hook: remember the response for the stream being started, if any."""
    opened = _OPENED.get()
    if opened is not None:
        opened.append(response)


async def chat_events(
    stream: AsyncIterator[types.GenerateContentResponse], opened: list[httpx.Response]
) -> AsyncIterator[ChatEvent]:
    """Gateway events from a ``streamGenerateContent`` stream, as each chunk arrives.

    The SDK sends the request on the first read: the HTTP response it opens is added to `opened`, for
    `close_stream`. The context variable is set and reset within that one step, never across a yield.
    """
    state = _StreamState()
    token = _OPENED.set(opened)
    try:
        chunk = await anext(stream, None)
    finally:
        _OPENED.reset(token)
    while chunk is not None:
        for event in state.observe(chunk):
            yield event
        chunk = await anext(stream, None)
    yield state.finished()


async def close_stream(stream: object, opened: Iterable[httpx.Response]) -> None:
    """Close the SDK's stream and, for certain, the HTTP response under it.

    Closing the SDK's generator does not reach the HTTP response: the SDK nests several generators, one of which
    sits in a reference cycle, so the response would only be closed whenever the garbage collector runs.
    """
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
    for response in opened:
        await response.aclose()


# --- unary responses -------------------------------------------------------------------------------------------


def embedding_result(response: types.EmbedContentResponse, keys: Sequence[int]) -> EmbeddingResult:
    """Vectors keyed back to the request's input keys (the i-th embedding is of the i-th input sent)."""
    embeddings = response.embeddings or []
    if len(embeddings) != len(keys):
        raise Unavailable(f"the upstream returned {len(embeddings)} embeddings for {len(keys)} inputs")
    vectors = tuple(
        EmbeddingVector(key, tuple(float(v) for v in embedding.values or ()))
        for key, embedding in zip(keys, embeddings, strict=True)
    )
    if response.usage_metadata is not None and response.usage_metadata.prompt_token_count is not None:
        tokens = response.usage_metadata.prompt_token_count
    else:  # Vertex's predict API counts tokens per input
        tokens = sum(int(e.statistics.token_count or 0) for e in embeddings if e.statistics is not None)
    return EmbeddingResult(vectors, Usage(tokens, 0))
