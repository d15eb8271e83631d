"""The `simulated` provider: deterministic, offline, the embedded default for the demo and the tests.

By default it echoes the last user message back word by word (one text delta per word; usage = word counts).
Knobs, as modelParameters:

- ``model.simulated_delay_ms``: delay before each delta (default 0);
- ``model.simulated_reply``: a fixed reply text instead of the echo;
- ``model.simulated_tool_calls``: JSON list of ``{"name": ..., "arguments": ...}`` emitted as streamed tool calls;
- ``model.simulated_error``: an HTTP-like status to fail with, after ``model.simulated_error_after`` deltas (default 0).

The usual generation parameters (temperature, max tokens...) are accepted; ``model.max_tokens`` /
``model.max_completion_tokens`` cut the reply and finish with "length".
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re

import orjson

from integration_api.errors import InvalidArgument, Unauthenticated, from_http_status
from providers.base import ALL_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.parameters import ParameterReader
from providers.types import (
    ChatCall,
    ChatFinished,
    EmbeddingCall,
    EmbeddingResult,
    EmbeddingVector,
    FinishReason,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
    RerankScore,
    TextDelta,
    ToolCallDelta,
    Usage,
    UserMessage,
)

NAME = "simulated"
EMBEDDING_DIMENSIONS = 16
_WORD = re.compile(r"\S+\s*")
# Generation parameters a real model would use; the simulator accepts and ignores them.
_IGNORED = (
    "model.name", "model.temperature", "model.top_p", "model.top_k", "model.stop", "model.tool_choice",
    "model.response_format", "model.seed", "model.user", "model.frequency_penalty", "model.presence_penalty",
    "model.reasoning_effort", "model.thinking",
)  # fmt: skip


def words(text: str) -> list[str]:
    """The deltas the simulator sends for `text`: each word with the whitespace that follows it."""
    return _WORD.findall(text.lstrip())


def count_words(text: str) -> int:
    """`len(words(text))`, without building the list."""
    return sum(1 for _ in _WORD.finditer(text))


class SimulatedProvider(Provider):
    name = NAME

    def __init__(self, credential: CredentialValue) -> None:
        self._credential = credential

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        params = ParameterReader(call.parameters, ignore=_IGNORED)
        delay = (params.number("model.simulated_delay_ms") or 0.0) / 1000.0
        reply = params.string("model.simulated_reply")
        tool_calls = _parse_tool_calls(params.raw("model.simulated_tool_calls"))
        error_status = params.integer("model.simulated_error")
        error_after = params.integer("model.simulated_error_after") or 0
        limit = params.integer("model.max_completion_tokens") or params.integer("model.max_tokens")
        params.reject_unused(NAME)

        finish: FinishReason = "tool_calls" if tool_calls else "stop"
        sent = 0
        # One word at a time: building the reply as a list first took 6 GiB for 800 concurrent 200k-word replies.
        for match in _WORD.finditer(reply if reply is not None else _last_user_text(call)):
            if limit is not None and sent >= limit:  # a word beyond the limit: the reply is cut
                finish, tool_calls = "length", []
                break
            if error_status is not None and sent >= error_after:
                break
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(match.group())
            sent += 1
        if error_status is not None:
            raise from_http_status(error_status, f"simulated upstream error {error_status} after {sent} deltas")

        for index, (tool_name, arguments) in enumerate(tool_calls):
            half = len(arguments) // 2
            if delay:
                await asyncio.sleep(delay)
            yield ToolCallDelta(
                index=index, id=f"call_{call.request_id}_{index}", name=tool_name, arguments=arguments[:half]
            )
            yield ToolCallDelta(index=index, arguments=arguments[half:])

        input_words = sum(count_words(text) for text in _all_texts(call))
        yield ChatFinished(finish, Usage(input_words, sent + len(tool_calls)), f"sim-{call.request_id}")

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        vectors = tuple(EmbeddingVector(index, _embedding(text)) for index, text in sorted(call.inputs.items()))
        return EmbeddingResult(vectors, Usage(sum(len(words(t)) for t in call.inputs.values()), 0))

    async def rerank(self, call: RerankCall) -> RerankResult:
        query = {w.strip().lower() for w in words(call.query)}
        scores = []
        for index, document in call.documents.items():
            terms = {w.strip().lower() for w in words(document)}
            scores.append(RerankScore(index, document, len(query & terms) / max(len(query), 1)))
        return RerankResult(tuple(sorted(scores, key=lambda s: (-s.relevance_score, s.index))))

    async def verify_credential(self) -> str:
        if self._credential.get("key") == "invalid":
            raise Unauthenticated("the simulated provider rejects the key 'invalid'")
        return "simulated credential accepted"

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        flagged = 1.0 if "forbidden" in call.content.lower() else 0.0
        return ModerationResult({"flagged": flagged, "violence": 0.0})


def _last_user_text(call: ChatCall) -> str:
    for message in reversed(call.messages):
        if isinstance(message, UserMessage):
            return message.content
    return ""


def _all_texts(call: ChatCall) -> list[str]:
    return [getattr(message, "content", "") or getattr(message, "text", "") for message in call.messages]


def _parse_tool_calls(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"model.simulated_tool_calls must be a JSON list: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(item, dict) and "name" in item for item in value):
        raise InvalidArgument('model.simulated_tool_calls must be a JSON list of {"name": ..., "arguments": ...}')
    calls = []
    for item in value:
        arguments = item.get("arguments", {})
        calls.append((str(item["name"]), arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()))
    return calls


def _embedding(text: str) -> tuple[float, ...]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_DIMENSIONS]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return tuple(v / norm for v in raw)


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    return SimulatedProvider(credential)


SPEC = ProviderSpec(NAME, _factory, ALL_RPCS, "deterministic offline provider for demos and tests")
