"""Emulator of the Anthropic HTTP API: the Messages API (streamed and not) and the models list.

The SDK's base URL is the emulator's origin; the routes are ``POST /v1/messages`` and ``GET /v1/models``. Every
request needs the key, in ``x-api-key`` or as ``Authorization: Bearer`` as recent SDKs send it (else 401
``authentication_error``), and ``anthropic-version`` (else 400); a body without model, max_tokens or messages is a 400.
A stream is Anthropic's named SSE events: ``message_start`` (with the input usage), then per content block
``content_block_start`` / ``content_block_delta`` / ``content_block_stop`` (a ``ping`` after the first block
starts), ``message_delta`` (stop reason and output usage) and ``message_stop``. Text streams one word per
``text_delta``; each tool call is a ``tool_use`` block (id and name at its start) whose input streams as
``input_json_delta`` fragments. Errors use ``{"type": "error", "error": {"type", "message"}}`` with the matching
status (529 for ``overloaded_error``), in-stream as an ``event: error``; every answer carries ``request-id``.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem, ToolCallScript

MODELS = (
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


class AnthropicEmulator(Emulator):
    vendor = "anthropic"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages), web.get("/v1/models", self.models)]

    def new_request_id(self) -> str:
        return f"req_emu{next(self._ids):017d}"

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        request_id = self.new_request_id()
        headers = {"request-id": request_id}
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        return web.json_response(error_body(status, message, request_id), status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        return SSEItem({"type": "error", "error": {"type": error_type(status), "message": message}}, event="error")

    def malformed_event(self) -> SSEItem:
        # The SDK skips nameless events, so a malformed one must carry a name to reach its JSON parser.
        return SSEItem("{this is not json", event="content_block_delta")

    # --- handlers --------------------------------------------------------------------------------------------

    async def begin(self, request: web.Request) -> tuple[RecordedRequest, Script] | web.Response:
        """Record, check the headers, take the script and apply the faults due before the answer."""
        recorded = await self.record(request)
        if (denied := self.reject(request)) is not None:
            recorded.completed = True
            return denied
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        return recorded, script

    def reject(self, request: web.Request) -> web.Response | None:
        # The API's header is x-api-key; recent SDKs send the key as a bearer token instead, which it also takes.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not request.headers.get("x-api-key", "").strip() and not bearer:
            return self.error_response(401, "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required")
        return None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script = begun
        body = recorded.body if isinstance(recorded.body, dict) else {}
        if (problem := _invalid(body)) is not None:
            recorded.completed = True
            return self.error_response(400, problem)
        model = str(body["model"])
        message_id = f"msg_emu{next(self._ids):017d}"
        headers = {"request-id": self.new_request_id()}
        if not body.get("stream"):
            recorded.completed = True
            return web.json_response(self.message(script, model, message_id), headers=headers)
        items = self.events(script, model, message_id)
        return await self.stream_sse(request, recorded, script, items, headers=headers)

    async def models(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _ = begun
        limit_text = request.query.get("limit", "20")
        limit = int(limit_text) if limit_text.isdigit() else 20
        data = [
            {"type": "model", "id": model, "display_name": name, "created_at": created, "lifecycle": "active"}
            for model, name, created in MODELS[:limit]
        ]
        recorded.completed = True
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        page = {"data": data, "has_more": limit < len(MODELS), "first_id": first, "last_id": last}
        return web.json_response(page, headers={"request-id": self.new_request_id()})

    # --- answers ---------------------------------------------------------------------------------------------

    def events(self, script: Script, model: str, message_id: str) -> list[SSEItem]:
        """The named SSE events a script becomes, in Anthropic's streaming shape."""
        start = self.message(script, model, message_id, streaming=True)
        items = [SSEItem({"type": "message_start", "message": start}, event="message_start")]
        blocks = _block_events(script)
        items.extend(blocks[:1])
        items.append(SSEItem({"type": "ping"}, event="ping"))
        items.extend(blocks[1:])
        delta = {"stop_reason": STOP_REASONS[script.normalised_finish()], "stop_sequence": None}
        usage = {"output_tokens": script.usage_output()}
        items.append(SSEItem({"type": "message_delta", "delta": delta, "usage": usage}, event="message_delta"))
        items.append(SSEItem({"type": "message_stop"}, event="message_stop"))
        return items

    def message(self, script: Script, model: str, message_id: str, *, streaming: bool = False) -> dict[str, Any]:
        """A Message object: the whole answer, or (`streaming`) the empty one `message_start` carries."""
        content: list[dict[str, Any]] = []
        if not streaming:
            if script.text:
                content.append({"type": "text", "text": script.text})
            for index, call in enumerate(script.tool_calls):
                content.append(
                    {"type": "tool_use", "id": script.tool_call_id(index), "name": call.name, "input": _input(call)}
                )
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": None if streaming else STOP_REASONS[script.normalised_finish()],
            "stop_sequence": None,
            "usage": {
                "input_tokens": script.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                # message_start reports the few tokens produced so far; message_delta has the cumulative count.
                "output_tokens": 1 if streaming else script.usage_output(),
                "service_tier": "standard",
            },
        }


def _block_events(script: Script) -> list[SSEItem]:
    """content_block_start/delta/stop for the text block (if any) then one tool_use block per tool call."""
    items: list[SSEItem] = []
    index = 0
    if script.text_chunks():
        items.append(_block_start(index, {"type": "text", "text": ""}))
        for piece in script.text_chunks():
            items.append(_block_delta(index, {"type": "text_delta", "text": piece}, content=True))
        items.append(_block_stop(index))
        index += 1
    for number, call in enumerate(script.tool_calls):
        block = {"type": "tool_use", "id": script.tool_call_id(number), "name": call.name, "input": {}}
        items.append(_block_start(index, block, content=True))
        # The API opens every tool input with an empty fragment before the JSON text.
        items.append(_block_delta(index, {"type": "input_json_delta", "partial_json": ""}))
        for fragment in _fragments(call.arguments):
            items.append(_block_delta(index, {"type": "input_json_delta", "partial_json": fragment}, content=True))
        items.append(_block_stop(index))
        index += 1
    return items


def _block_start(index: int, block: dict[str, Any], *, content: bool = False) -> SSEItem:
    data = {"type": "content_block_start", "index": index, "content_block": block}
    return SSEItem(data, event="content_block_start", content=content)


def _block_delta(index: int, delta: dict[str, Any], *, content: bool = False) -> SSEItem:
    data = {"type": "content_block_delta", "index": index, "delta": delta}
    return SSEItem(data, event="content_block_delta", content=content)


def _block_stop(index: int) -> SSEItem:
    return SSEItem({"type": "content_block_stop", "index": index}, event="content_block_stop")


def _fragments(arguments: str) -> list[str]:
    """Tool input streamed in two fragments (one when too short to split)."""
    half = len(arguments) // 2
    return [arguments] if half == 0 else [arguments[:half], arguments[half:]]


def _input(call: ToolCallScript) -> Any:
    try:
        return orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        return {}


def _invalid(body: dict[str, Any]) -> str | None:
    """The API's complaint about a request body missing what it requires, if any."""
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0:
        return "max_tokens: Input should be a non-negative integer"
    return None


EMULATOR = AnthropicEmulator
