"""Emulator of the OpenAI HTTP API: chat completions (streamed and not), embeddings, models and moderations.

Served under ``/v1`` (the SDK's base URL is ``origin + "/v1"``) with ``Authorization: Bearer`` auth. A stream is
OpenAI's: ``chat.completion.chunk`` events, the role in the first delta, one chunk per word, tool calls as a
header delta (index, id, name) then argument fragments, a finish chunk, the usage chunk with empty ``choices``
when ``stream_options.include_usage`` asks for it, then ``data: [DONE]``. Every answer carries ``x-request-id``.
Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``, in-stream as a bare ``data:`` event.

`OpenAIEmulator` also holds the hooks the Azure emulator (same wire format) overrides.
"""

from __future__ import annotations

import array
import base64
import hashlib
import itertools
import math
from typing import Any

from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem, ToolCallScript

CREATED = 1_735_689_600  # a fixed timestamp keeps answers deterministic
FINGERPRINT = "fp_emulated"
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "omni-moderation-latest")
MODERATION_MODEL = "omni-moderation-latest"
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
# Text containing this word is flagged for violence by the moderation endpoint.
FLAGGED_WORD = "forbidden"

# OpenAI's (type, code) for each status, as its API sends them.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("request_forbidden", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """The deterministic unit vector the emulators answer for `text`."""
    raw: list[float] = []
    for block in itertools.count():
        if len(raw) >= dimensions:
            break
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw.extend((byte - 127.5) / 127.5 for byte in digest)
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def moderation_scores(text: str) -> dict[str, float]:
    flagged = FLAGGED_WORD in text.lower()
    return {name: (0.97 if flagged and name == "violence" else 0.0012) for name in MODERATION_CATEGORIES}


def retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


class OpenAIEmulator(Emulator):
    vendor = "openai"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.models),
            web.post("/v1/moderations", self.moderations),
        ]

    # --- hooks the Azure emulator overrides ------------------------------------------------------------------

    def reject(self, request: web.Request) -> web.Response | None:
        """The error answer for a request that is not authenticated (or not addressed right), else None."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token:
            return None
        return self.error_response(
            401, "You didn't provide an API key. You need to provide your API key in an Authorization header."
        )

    def request_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_{next(self._ids):032x}"}

    def model_of(self, request: web.Request, body: dict[str, Any]) -> str:
        model = body.get("model")
        return model if isinstance(model, str) and model else MODELS[0]

    def prologue(self) -> list[SSEItem]:
        """Events sent before the first chunk (Azure: the prompt filter annotation)."""
        return []

    def choice_extras(self, finish_reason: str | None) -> dict[str, Any]:
        """Extra fields of every choice (Azure: content_filter_results)."""
        return {}

    def completion_extras(self) -> dict[str, Any]:
        """Extra top-level fields of a non-streamed completion (Azure: prompt_filter_results)."""
        return {}

    def models_body(self) -> dict[str, Any]:
        data = [{"id": model, "object": "model", "created": CREATED, "owned_by": "openai"} for model in MODELS]
        return {"object": "list", "data": data}

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = self.request_headers()
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        return web.json_response(openai_error_body(status, message), status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        return SSEItem(openai_error_body(status, message))

    # --- handlers --------------------------------------------------------------------------------------------

    async def begin(self, request: web.Request) -> tuple[RecordedRequest, Script] | web.Response:
        """Record, authenticate, take the script and apply the faults due before the answer.

        Returns the error response to send as is, or what the handler needs to answer.
        """
        recorded = await self.record(request)
        if (denied := self.reject(request)) is not None:
            recorded.completed = True
            return denied
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        return recorded, script

    async def chat(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script = begun
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = self.model_of(request, body)
        if not body.get("stream"):
            recorded.completed = True
            return web.json_response(self.completion(script, model), headers=self.request_headers())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        items = self.chunks(script, model, include_usage)
        return await self.stream_sse(request, recorded, script, items, headers=self.request_headers())

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script = begun
        body = recorded.body if isinstance(recorded.body, dict) else {}
        inputs = _texts(body.get("input"))
        dimensions = body.get("dimensions") or script.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector: Any = embedding_vector(text, int(dimensions))
            if as_base64:
                vector = base64.b64encode(array.array("f", vector).tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(text.split()) for text in inputs)
        recorded.completed = True
        answer = {
            "object": "list",
            "data": data,
            "model": self.model_of(request, body),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.json_response(answer, headers=self.request_headers())

    async def models(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _ = begun
        recorded.completed = True
        return web.json_response(self.models_body(), headers=self.request_headers())

    async def moderations(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _ = begun
        body = recorded.body if isinstance(recorded.body, dict) else {}
        results = []
        for text in _texts(body.get("input")):
            scores = moderation_scores(text)
            results.append(
                {
                    "flagged": any(score > 0.5 for score in scores.values()),
                    "categories": {name: score > 0.5 for name, score in scores.items()},
                    "category_scores": scores,
                    "category_applied_input_types": {name: ["text"] for name in scores},
                }
            )
        model = body.get("model") or MODERATION_MODEL
        recorded.completed = True
        answer = {"id": f"modr-{next(self._ids)}", "model": model, "results": results}
        return web.json_response(answer, headers=self.request_headers())

    # --- answers ---------------------------------------------------------------------------------------------

    def chunks(self, script: Script, model: str, include_usage: bool) -> list[SSEItem]:
        """The SSE events a script becomes, in OpenAI's streaming shape."""
        chunk_id = f"chatcmpl-{next(self._ids)}"

        def chunk(delta: dict[str, Any], finish: str | None = None, *, content: bool = False) -> SSEItem:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{**choice, **self.choice_extras(finish)}],
            }
            if include_usage:
                data["usage"] = None  # OpenAI sends a null usage on every chunk but the last
            return SSEItem(data, content=content)

        items = self.prologue()
        items.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        items.extend(chunk({"content": piece}, content=True) for piece in script.text_chunks())
        for index, call in enumerate(script.tool_calls):
            header = {"index": index, "id": script.tool_call_id(index), "type": "function"}
            header["function"] = {"name": call.name, "arguments": ""}
            items.append(chunk({"tool_calls": [header]}, content=True))
            for fragment in _fragments(call.arguments):
                piece = {"index": index, "function": {"arguments": fragment}}
                items.append(chunk({"tool_calls": [piece]}, content=True))
        items.append(chunk({}, FINISH_REASONS[script.normalised_finish()]))
        if include_usage:
            usage = {"id": chunk_id, "object": "chat.completion.chunk", "created": CREATED, "model": model}
            usage.update({"system_fingerprint": FINGERPRINT, "choices": [], "usage": _usage(script)})
            items.append(SSEItem(usage))
        items.append(SSEItem("[DONE]"))
        return items

    def completion(self, script: Script, model: str) -> dict[str, Any]:
        """A non-streamed chat.completion for the script."""
        message: dict[str, Any] = {"role": "assistant", "content": script.text or None, "refusal": None}
        if script.tool_calls:
            message["tool_calls"] = [
                {"id": script.tool_call_id(i), "type": "function", "function": _function(c)}
                for i, c in enumerate(script.tool_calls)
            ]
        finish = FINISH_REASONS[script.normalised_finish()]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{**choice, **self.choice_extras(finish)}],
            "usage": _usage(script),
            **self.completion_extras(),
        }


def _usage(script: Script) -> dict[str, Any]:
    output = script.usage_output()
    return {
        "prompt_tokens": script.input_tokens,
        "completion_tokens": output,
        "total_tokens": script.input_tokens + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _function(call: ToolCallScript) -> dict[str, str]:
    return {"name": call.name, "arguments": call.arguments}


def _fragments(arguments: str) -> list[str]:
    """Arguments streamed in two fragments, as the API splits them (one when too short to split)."""
    half = len(arguments) // 2
    return [arguments] if half == 0 else [arguments[:half], arguments[half:]]


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item if isinstance(item, str) else str(item) for item in value]
    return []


EMULATOR = OpenAIEmulator
