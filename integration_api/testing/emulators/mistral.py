"""Emulator of the Mistral AI HTTP API: chat completions (streamed and not) and the models list.

Served at the origin (the SDK's server URL; its paths start with ``/v1``) with ``Authorization: Bearer`` auth.
A stream is Mistral's: data-only ``chat.completion.chunk`` events, the role in the first delta, one chunk per word,
each tool call sent whole in its own delta (id, name and all arguments), a last chunk that carries both the
finish reason and the usage, then ``data: [DONE]``. Every answer carries ``mistral-correlation-id``.
Errors use Mistral's bodies: ``{"object": "error", "message", "type", "param", "code"}``, except a refused key,
answered by the API gateway as ``{"message": "Unauthorized", "request_id"}``. An in-stream error is the same
error object as a bare ``data:`` event.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem

CREATED = 1_735_689_600  # a fixed timestamp keeps answers deterministic
MODELS = ("mistral-small-latest", "mistral-large-latest", "codestral-latest")
# Mistral has no content-filter finish reason of its own; the emulator sends the OpenAI name for that case.
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}

# Mistral's error `type` (and numeric `code`) for each status, as its API sends them.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("unauthorized", None),
    403: ("forbidden", None),
    404: ("not_found", "1500"),
    422: ("invalid_request_error", None),
    429: ("rate_limited", "1300"),
    500: ("internal_server_error", None),
    503: ("service_unavailable", None),
}


def mistral_error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("internal_server_error" if status >= 500 else "invalid_request_error", None))
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}


class MistralEmulator(Emulator):
    vendor = "mistral"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self.chat), web.get("/v1/models", self.models)]

    def _headers(self) -> dict[str, str]:
        return {"mistral-correlation-id": f"{next(self._ids):032x}"}

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = self._headers()
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        if status == 401:  # refused at the API gateway, before the model service: its own, shorter body
            body: dict[str, Any] = {"message": message, "request_id": headers["mistral-correlation-id"]}
        else:
            body = mistral_error_body(status, message)
        return web.json_response(body, status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        return SSEItem(mistral_error_body(status, message))

    # --- handlers --------------------------------------------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[RecordedRequest, Script] | web.Response:
        recorded = await self.record(request)
        if not request.headers.get("Authorization", "").removeprefix("Bearer ").strip():
            recorded.completed = True
            return self.error_response(401, "Unauthorized")
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        return recorded, script

    async def chat(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, script = begun
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = body.get("model") if isinstance(body.get("model"), str) else MODELS[0]
        if not body.get("stream"):
            recorded.completed = True
            return web.json_response(self.completion(script, str(model)), headers=self._headers())
        return await self.stream_sse(
            request, recorded, script, self.chunks(script, str(model)), headers=self._headers()
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        recorded, _ = begun
        recorded.completed = True
        data = [
            {
                "id": model,
                "object": "model",
                "created": CREATED,
                "owned_by": "mistralai",
                "type": "base",
                "capabilities": {"completion_chat": True, "function_calling": True},
                "max_context_length": 131072,
            }
            for model in MODELS
        ]
        return web.json_response({"object": "list", "data": data}, headers=self._headers())

    # --- answers ---------------------------------------------------------------------------------------------

    def chunks(self, script: Script, model: str) -> list[SSEItem]:
        """The SSE events a script becomes, in Mistral's streaming shape."""
        chunk_id = f"{next(self._ids):032x}"

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            head = {"id": chunk_id, "object": "chat.completion.chunk", "created": CREATED, "model": model}
            return {**head, "choices": [choice], **extra}

        items = [SSEItem(chunk({"role": "assistant", "content": ""}))]
        items.extend(SSEItem(chunk({"content": piece}), content=True) for piece in script.text_chunks())
        for index, call in enumerate(script.tool_calls):
            whole = {"id": script.tool_call_id(index), "function": _function(call.name, call.arguments), "index": index}
            items.append(SSEItem(chunk({"content": "", "tool_calls": [whole]}), content=True))
        finish = FINISH_REASONS[script.normalised_finish()]
        items.append(SSEItem(chunk({"content": ""}, finish, usage=_usage(script))))
        items.append(SSEItem("[DONE]"))
        return items

    def completion(self, script: Script, model: str) -> dict[str, Any]:
        """A non-streamed chat completion for the script."""
        message: dict[str, Any] = {"role": "assistant", "content": script.text, "tool_calls": None, "prefix": False}
        if script.tool_calls:
            message["tool_calls"] = [
                {
                    "id": script.tool_call_id(i),
                    "type": "function",
                    "function": _function(c.name, c.arguments),
                    "index": i,
                }
                for i, c in enumerate(script.tool_calls)
            ]
        choice = {"index": 0, "message": message, "finish_reason": FINISH_REASONS[script.normalised_finish()]}
        return {
            "id": f"{next(self._ids):032x}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [choice],
            "usage": _usage(script),
        }


def _usage(script: Script) -> dict[str, int]:
    output = script.usage_output()
    return {
        "prompt_tokens": script.input_tokens,
        "completion_tokens": output,
        "total_tokens": script.input_tokens + output,
    }


def _function(name: str, arguments: str) -> dict[str, str]:
    return {"name": name, "arguments": arguments}


EMULATOR = MistralEmulator
