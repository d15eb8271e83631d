"""Emulator of the Gemini API (generativelanguage.googleapis.com): generateContent, streamed or not, embeddings, models.

Served under ``/v1beta`` and ``/v1`` (the SDK's base URL is the origin), authenticated by ``x-goog-api-key`` (or
``?key=``). ``POST /{version}/models/{model}:{method}`` dispatches on the method: ``streamGenerateContent``
(``?alt=sse``: ``data:`` events, each a whole ``GenerateContentResponse``: one per word of text, one per function
call, sent whole with its ``args`` as an object and, on the first call, a ``thoughtSignature``; then a last chunk
with the ``finishReason`` and the ``usageMetadata``), ``generateContent``, ``embedContent``,
``batchEmbedContents``; ``GET /{version}/models`` lists models. Errors are ``google.rpc.Status`` JSON,
``{"error": {"code", "message", "status", "details"}}``: a 429 carries a ``RetryInfo`` detail (Google sends no
retry-after header), a key starting with ``invalid`` is refused as the API refuses a bad key (400 with an
``ErrorInfo`` reason ``API_KEY_INVALID``), and an error inside a stream is a ``data:`` event with that same body.

`GeminiEmulator` also holds the hooks the Vertex AI emulator (same wire format) overrides.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem
from integration_api.testing.emulators.openai import embedding_vector

FINISH_REASONS = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001")
# What the emulator attaches to the first function call of a reply, as thinking models do.
THOUGHT_SIGNATURE = base64.b64encode(b"emulated thought signature").decode()
# google.rpc.Code names by HTTP status, as Google's APIs send them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

Handler = Callable[[web.Request, RecordedRequest, Script, str], Awaitable[web.StreamResponse]]


def google_error_body(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    """A ``google.rpc.Status`` error body; a retry delay travels as a ``RetryInfo`` detail."""
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if retry_after is not None:
        delay = f"{int(retry_after)}s" if float(retry_after).is_integer() else f"{retry_after}s"
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
    return {"error": error}


def usage_metadata(script: Script) -> dict[str, Any]:
    output = script.usage_output()
    return {
        "promptTokenCount": script.input_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": script.input_tokens + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": script.input_tokens}],
    }


def function_call_part(script: Script, index: int) -> dict[str, Any]:
    call = script.tool_calls[index]
    try:
        args = json.loads(call.arguments)
    except json.JSONDecodeError:
        args = {}
    function_call: dict[str, Any] = {"name": call.name, "args": args if isinstance(args, dict) else {}}
    if call.id:  # the Gemini API sends no call ids unless one is set; the adapter invents them
        function_call["id"] = call.id
    part: dict[str, Any] = {"functionCall": function_call}
    if index == 0:
        part["thoughtSignature"] = THOUGHT_SIGNATURE
    return part


def texts_of(content: Any) -> str:
    """The text of a ``Content`` object of a request."""
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(str(part.get("text", "")) for part in parts or () if isinstance(part, dict))


def dimensions_of(body: dict[str, Any], script: Script) -> int:
    value = body.get("outputDimensionality", body.get("output_dimensionality"))
    return int(value) if isinstance(value, int) and value > 0 else script.embedding_dimensions


class GeminiEmulator(Emulator):
    vendor = "gemini"
    api_versions = ("v1beta", "v1")

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._ids = itertools.count(1)

    def credential(self, key: str = "emulated-gemini-key") -> dict[str, str]:
        """A `gemini` credential for this emulator (its base_url must be allowed, as 127.0.0.1 is in tests)."""
        return {"key": key, "base_url": self.base_url}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{version}/models/{target}", self.model_method),
            web.get("/{version}/models", self.list_models),
        ]

    # --- hooks the Vertex AI emulator overrides --------------------------------------------------------------

    def reject(self, request: web.Request) -> web.Response | None:
        """The error answer for a request that is not authenticated (or not addressed right), else None."""
        if request.match_info.get("version") not in self.api_versions:
            return self.error_response(404, "Method not found.")
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            return self.error_response(401, "Method doesn't allow unregistered callers. Please use an API Key.")
        if key.startswith("invalid"):
            body = google_error_body(400, "API key not valid. Please pass a valid API key.")
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            body["error"]["details"] = [{**reason, "domain": "googleapis.com"}]
            return web.json_response(body, status=400)
        return None

    def methods(self) -> dict[str, Handler]:
        return {
            "streamGenerateContent": self.stream_generate,
            "generateContent": self.generate,
            "embedContent": self.embed_content,
            "batchEmbedContents": self.batch_embed_contents,
        }

    def embedding_options(self, item: dict[str, Any]) -> dict[str, Any]:
        """Where an embedding request puts its options (Vertex AI: under embedContentConfig)."""
        return item

    def response_extras(self) -> dict[str, Any]:
        """Extra top-level fields of every GenerateContentResponse (Vertex AI: createTime)."""
        return {}

    def models_body(self) -> dict[str, Any]:
        models = [
            {
                "name": f"models/{model}",
                "version": "001",
                "displayName": model.replace("-", " ").title(),
                "inputTokenLimit": 1_048_576 if "embedding" not in model else 2048,
                "outputTokenLimit": 65_536 if "embedding" not in model else 1,
                "supportedGenerationMethods": (
                    ["embedContent", "countTextTokens"] if "embedding" in model else ["generateContent", "countTokens"]
                ),
            }
            for model in MODELS
        ]
        return {"models": models}

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        return web.json_response(google_error_body(status, message, retry_after), status=status)

    def error_event(self, status: int, message: str) -> SSEItem:
        return SSEItem(google_error_body(status, message))

    # --- handlers --------------------------------------------------------------------------------------------

    async def begin(self, request: web.Request) -> tuple[RecordedRequest, Script] | web.Response:
        """Record, authenticate, take the script and apply the faults due before the answer."""
        recorded = await self.record(request)
        if (denied := self.reject(request)) is not None:
            recorded.completed = True
            return denied
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        return recorded, script

    async def model_method(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        handler = self.methods().get(method)
        if handler is None:
            await self.record(request)
            return self.error_response(404, f"Method {method!r} not found for model {model!r}.")
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script = begun
        return await handler(request, recorded, script, model)

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        begun[0].completed = True
        return web.json_response(self.models_body())

    async def stream_generate(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        return await self.stream_sse(request, recorded, script, self.chunks(script, model))

    async def generate(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        parts: list[dict[str, Any]] = [{"text": script.text}] if script.text else []
        parts += [function_call_part(script, index) for index in range(len(script.tool_calls))]
        recorded.completed = True
        return web.json_response(self.response(model, parts, script, final=True))

    async def embed_content(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        body = recorded.body if isinstance(recorded.body, dict) else {}
        values = embedding_vector(texts_of(body.get("content")), dimensions_of(self.embedding_options(body), script))
        recorded.completed = True
        return web.json_response({"embedding": {"values": values}})

    async def batch_embed_contents(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        body = recorded.body if isinstance(recorded.body, dict) else {}
        items = [item for item in body.get("requests") or () if isinstance(item, dict)]
        embeddings = [
            {
                "values": embedding_vector(
                    texts_of(item.get("content")), dimensions_of(self.embedding_options(item), script)
                )
            }
            for item in items
        ]
        recorded.completed = True
        return web.json_response({"embeddings": embeddings})

    # --- answers ---------------------------------------------------------------------------------------------

    def response(self, model: str, parts: list[dict[str, Any]], script: Script, *, final: bool) -> dict[str, Any]:
        """One GenerateContentResponse; the final one carries the finish reason and the usage."""
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        data: dict[str, Any] = {"candidates": [candidate]}
        if final:
            finish = FINISH_REASONS[script.normalised_finish()]
            candidate["finishReason"] = finish
            if finish == "SAFETY":
                rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                candidate["safetyRatings"] = [rating]
            data["usageMetadata"] = usage_metadata(script)
        data["modelVersion"] = model
        data["responseId"] = f"resp-{next(self._ids):08d}"
        return {**data, **self.response_extras()}

    def chunks(self, script: Script, model: str) -> list[SSEItem]:
        """The SSE events a script becomes, in Gemini's streaming shape."""
        items = [
            SSEItem(self.response(model, [{"text": piece}], script, final=False), content=True)
            for piece in script.text_chunks()
        ]
        items += [
            SSEItem(self.response(model, [function_call_part(script, index)], script, final=False), content=True)
            for index in range(len(script.tool_calls))
        ]
        items.append(SSEItem(self.response(model, [{"text": ""}], script, final=True)))
        return items


EMULATOR = GeminiEmulator
