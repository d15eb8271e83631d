"""The OpenAI response bodies: ``chat.completion.chunk`` SSE events, the ``chat.completion`` object, embeddings.

Streamed exactly as OpenAI streams them: every chunk carries the same ``id``, ``object``, ``created`` and
``model``; ``choices[0]`` has ``index``, ``delta``, ``logprobs`` (null) and ``finish_reason`` (null until the
finishing chunk, whose delta is empty); the first chunk's delta carries ``role: "assistant"``; a tool call's first
delta carries its ``index``, ``id``, ``type`` and ``function.name``, later ones ``index`` and argument fragments
only, so parallel calls stay apart by index. With ``stream_options.include_usage`` every chunk has ``usage: null``
and one more chunk with empty ``choices`` and the usage comes before ``data: [DONE]``.

The hot path: each event is the constant head of the chunk (built once per request) plus the delta's JSON.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from typing import Any

import orjson

from providers.types import EmbeddingResult, FinishReason, ToolCall, ToolCallDelta, Usage

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_OPENAI_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter"})


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def finish_reason(reason: FinishReason) -> str:
    return reason if reason in _OPENAI_FINISH else "stop"


def usage_object(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


class ChunkEncoder:
    """The SSE events of one streamed chat completion."""

    def __init__(self, request_id: str, model: str, *, include_usage: bool, created: int | None = None) -> None:
        head = {
            "id": completion_id(request_id),
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": model,
        }
        self._head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":[{"index":0,"delta":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._usage_head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":[],"usage":'
        self._role_sent = False

    def _chunk(self, delta: dict[str, Any], finish: bytes = b"null") -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return self._head + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":' + finish + b"}]" + self._tail

    def text(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def tool_call(self, delta: ToolCallDelta) -> bytes:
        call: dict[str, Any] = {"index": delta.index}
        function: dict[str, str] = {"arguments": delta.arguments}
        if delta.id or delta.name:
            call["id"] = delta.id
            call["type"] = "function"
            function = {"name": delta.name, "arguments": delta.arguments}
        call["function"] = function
        return self._chunk({"tool_calls": [call]})

    def finish(self, reason: FinishReason) -> bytes:
        delta: dict[str, Any] = {} if self._role_sent else {"content": ""}
        return self._chunk(delta, b'"' + finish_reason(reason).encode() + b'"')

    def usage(self, usage: Usage) -> bytes:
        return self._usage_head + orjson.dumps(usage_object(usage)) + b"}\n\n"


def chat_completion(
    request_id: str, model: str, text: str, tool_calls: Sequence[ToolCall], reason: FinishReason, usage: Usage
) -> bytes:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    message["refusal"] = None
    if tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in tool_calls
        ]
    body = {
        "id": completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(reason)}],
        "usage": usage_object(usage),
    }
    return orjson.dumps(body)


def embeddings(model: str, result: EmbeddingResult, *, as_base64: bool) -> bytes:
    """The ``list`` of ``embedding`` objects; base64 is the little-endian float32 bytes, as OpenAI sends it."""
    data = []
    for vector in result.vectors:
        values: Any = list(vector.values)
        if as_base64:
            values = base64.b64encode(struct.pack(f"<{len(vector.values)}f", *vector.values)).decode()
        data.append({"object": "embedding", "index": vector.index, "embedding": values})
    usage = {"prompt_tokens": result.usage.input_tokens, "total_tokens": result.usage.input_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})
