"""Emulator of the Cohere v2 HTTP API: chat (streamed and not), embed, rerank, and the v1 models list.

Served at the origin (the SDK's base URL; its paths are ``/v2/...`` and ``/v1/models``) with
``Authorization: Bearer`` auth. A stream is Cohere's v2: named SSE events (``event: <type>``) whose JSON also
carries the ``type``: message-start (with the generation id), then either content-start / one content-delta per
word / content-end, or, when the model calls tools, one tool-plan-delta per word of the plan and, per call,
tool-call-start (id, name, empty arguments) / tool-call-delta (argument fragments) / tool-call-end; then
message-end with the finish reason and usage (billed_units and tokens). There is no ``[DONE]``.
Errors use Cohere's body ``{"id", "message"}``; an in-stream error is a message-end whose finish reason is
``ERROR`` with the error text in ``delta.error`` (Cohere's stream carries no status).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem
from integration_api.testing.emulators.openai import embedding_vector

MODELS = ("command-a-03-2025", "command-r-plus-08-2024", "embed-english-v3.0", "rerank-english-v3.0")
# Cohere v2 has no content-filter finish reason; v1's ERROR_TOXIC stands in for it.
FINISH_REASONS = {
    "stop": "COMPLETE",
    "length": "MAX_TOKENS",
    "tool_calls": "TOOL_CALL",
    "content_filter": "ERROR_TOXIC",
}


class CohereEmulator(Emulator):
    vendor = "cohere"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/chat", self.chat),
            web.post("/v2/embed", self.embed),
            web.post("/v2/rerank", self.rerank),
            web.get("/v1/models", self.models),
        ]

    def _id(self) -> str:
        return str(uuid.UUID(int=next(self._ids)))

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        return web.json_response({"id": self._id(), "message": message}, status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        delta = {"error": message, "finish_reason": "ERROR", "usage": _usage(0, 0)}
        return SSEItem({"type": "message-end", "delta": delta}, event="message-end")

    # --- handlers --------------------------------------------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[RecordedRequest, Script, dict[str, Any]] | web.Response:
        recorded = await self.record(request)
        if not request.headers.get("Authorization", "").removeprefix("Bearer ").strip():
            recorded.completed = True
            return self.error_response(401, "no api key supplied")
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        return recorded, script, recorded.body if isinstance(recorded.body, dict) else {}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script, body = begun
        if not body.get("stream"):
            recorded.completed = True
            return web.json_response(self.response(script))
        return await self.stream_sse(request, recorded, script, self.stream_events(script))

    async def embed(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script, body = begun
        texts = [str(text) for text in body.get("texts") or []]
        dimensions = int(body.get("output_dimension") or script.embedding_dimensions)
        recorded.completed = True
        answer = {
            "id": self._id(),
            "response_type": "embeddings_by_type",
            "embeddings": {"float": [embedding_vector(text, dimensions) for text in texts]},
            "texts": texts,
            "meta": _meta({"input_tokens": sum(len(text.split()) for text in texts)}),
        }
        return web.json_response(answer)

    async def rerank(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _, body = begun
        query = {word.lower() for word in str(body.get("query", "")).split()}
        documents = [str(document) for document in body.get("documents") or []]
        scored = []
        for index, document in enumerate(documents):
            overlap = len(query & {word.lower().strip(".,") for word in document.split()})
            scored.append({"index": index, "relevance_score": round(overlap / max(len(query), 1), 6)})
        scored.sort(key=lambda result: (-float(result["relevance_score"]), int(result["index"])))
        top_n = body.get("top_n")
        recorded.completed = True
        answer = {
            "id": self._id(),
            "results": scored[: int(top_n)] if top_n else scored,
            "meta": _meta({"search_units": 1}),
        }
        return web.json_response(answer)

    async def models(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _, _ = begun
        page_size = int(request.query.get("page_size") or len(MODELS))
        listed = [
            {
                "name": name,
                "endpoints": ["embed"]
                if name.startswith("embed")
                else ["rerank"]
                if name.startswith("rerank")
                else ["chat"],
                "finetuned": False,
                "context_length": 128000,
                "default_endpoints": [],
            }
            for name in MODELS[:page_size]
        ]
        recorded.completed = True
        next_page = "page-2" if page_size < len(MODELS) else None
        return web.json_response({"models": listed, "next_page_token": next_page})

    # --- answers ---------------------------------------------------------------------------------------------

    def stream_events(self, script: Script) -> list[SSEItem]:
        """The named SSE events a script becomes, in Cohere's v2 streaming shape."""
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        items = [_event("message-start", id=self._id(), delta={"message": start})]
        if script.tool_calls:
            items.extend(_event("tool-plan-delta", True, delta=_message(tool_plan=p)) for p in script.text_chunks())
            for index, call in enumerate(script.tool_calls):
                function = {"name": call.name, "arguments": ""}
                header = {"id": script.tool_call_id(index), "type": "function", "function": function}
                items.append(_event("tool-call-start", True, index=index, delta=_message(tool_calls=header)))
                for fragment in _fragments(call.arguments):
                    part = {"function": {"arguments": fragment}}
                    items.append(_event("tool-call-delta", True, index=index, delta=_message(tool_calls=part)))
                items.append(_event("tool-call-end", index=index))
        else:
            items.append(_event("content-start", index=0, delta=_message(content={"type": "text", "text": ""})))
            for piece in script.text_chunks():
                items.append(_event("content-delta", True, index=0, delta=_message(content={"text": piece})))
            items.append(_event("content-end", index=0))
        usage = _usage(script.input_tokens, script.usage_output())
        end = {"finish_reason": FINISH_REASONS[script.normalised_finish()], "usage": usage}
        items.append(_event("message-end", delta=end))
        return items

    def response(self, script: Script) -> dict[str, Any]:
        """A non-streamed v2 chat response for the script."""
        message: dict[str, Any] = {"role": "assistant"}
        if script.tool_calls:
            message["tool_plan"] = script.text
            message["tool_calls"] = [
                {
                    "id": script.tool_call_id(i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for i, c in enumerate(script.tool_calls)
            ]
        else:
            message["content"] = [{"type": "text", "text": script.text}]
        return {
            "id": self._id(),
            "finish_reason": FINISH_REASONS[script.normalised_finish()],
            "message": message,
            "usage": _usage(script.input_tokens, script.usage_output()),
        }


def _event(kind: str, content: bool = False, **fields: Any) -> SSEItem:
    return SSEItem({"type": kind, **fields}, event=kind, content=content)


def _message(**fields: Any) -> dict[str, Any]:
    return {"message": fields}


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    counts = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return {"billed_units": dict(counts), "tokens": dict(counts)}


def _meta(billed_units: dict[str, int]) -> dict[str, Any]:
    return {"api_version": {"version": "2"}, "billed_units": billed_units}


def _fragments(arguments: str) -> list[str]:
    """Arguments streamed in two fragments (one when too short to split)."""
    half = len(arguments) // 2
    return [arguments] if half == 0 else [arguments[:half], arguments[half:]]


EMULATOR = CohereEmulator
