"""``POST /v1/chat/completions``: one OpenAI chat completion through `Gateway.provider`, streamed or not.

A raw ASGI endpoint, because a stream needs three things Starlette's `StreamingResponse` does not give together:

- the HTTP status decided by the first event: a provider that fails before its first delta (a bad key, a rate
  limit) answers with the error's own status and body, so the SDKs raise their typed errors; once the response
  started, a failure is one SSE error event and the stream ends without ``[DONE]``;
- SSE comment pings (``: ping``) every `http_sse_ping_s` while nothing else is written (a long time to first
  token, a slow tool call), so idle-timeout proxies keep the connection; when the first event takes longer than
  one ping interval, the 200 and the first ping go out and any later error is an SSE event;
- a client that disconnects cancels the request: a guard task waits for ``http.disconnect`` (uvicorn silently
  drops what is sent to a closed connection, so sending alone would never notice) and cancels the request's task,
  which closes the provider's stream and with it the upstream call.

One access-log line per request, as on gRPC (status CANCELLED / 499 for a client that went away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from integration_api import access_log
from integration_api.context import RequestContext
from integration_api.errors import Cancelled, GatewayError, Internal, Unavailable
from integration_api.gateway import Gateway
from integration_api.http import openai_errors, openai_sse
from integration_api.http.auth import authenticate, peer_of
from integration_api.http.openai_request import (
    ChatCompletionRequest,
    credential,
    json_object,
    new_request_id,
    parse_chat,
)
from integration_api.settings import Settings
from providers.base import ChatStream, CredentialValue
from providers.types import ChatFinished, TextDelta, ToolCall, ToolCallDelta

logger = logging.getLogger(__name__)
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class ChatCompletions:
    """The endpoint (an ASGI app)."""

    def __init__(self, gateway: Gateway, settings: Settings) -> None:
        self.gateway = gateway
        self.ping_s = settings.http_sse_ping_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = new_request_id()
        try:
            if self.gateway.lifecycle.draining:
                raise Unavailable("the server is shutting down; send the request to another instance")
            stream = await authenticate(self.gateway, request.headers, peer_of(scope.get("client")))
            parsed = parse_chat(json_object(await request.body()), self.gateway.registry, request_id)
            vendor_credential = credential(request.headers)
        except GatewayError as error:
            await openai_errors.error_response(error)(scope, receive, send)
            return
        rpc = "StreamChat" if parsed.stream else "Chat"
        context = RequestContext(stream, rpc, parsed.provider, request_id, parsed.call.model)
        run = _Run(self.gateway, context, parsed, vendor_credential, send, self.ping_s if parsed.stream else None)
        await run.serve(receive)


@dataclass
class _Reply:
    """What a non-streamed completion accumulates."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, arguments...]

    def add(self, delta: ToolCallDelta) -> None:
        parts = self.calls.setdefault(delta.index, ["", ""])
        parts[0] = parts[0] or delta.id
        parts[1] = parts[1] or delta.name
        parts.append(delta.arguments)

    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(p[0], p[1], "".join(p[2:]), index) for index, p in sorted(self.calls.items())]


class _Run:
    """One chat completion: its provider stream, its writes, its guard."""

    def __init__(
        self,
        gateway: Gateway,
        context: RequestContext,
        parsed: ChatCompletionRequest,
        vendor_credential: CredentialValue,
        send: Send,
        ping_s: float | None,
    ) -> None:
        self.gateway = gateway
        self.context = context
        self.parsed = parsed
        self.credential = vendor_credential
        self._send = send
        self.ping_s = ping_s
        self.started = False  # the response's status went out
        self.finished = False  # the last write happened (or is happening): the guard stays silent
        self.disconnected = False
        self.last_write = time.monotonic()
        self.first_output_ns = 0

    async def serve(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        guard = asyncio.create_task(self._guard(receive, task), name="http-chat-guard")
        try:
            with self.gateway.provider(self.context, self.credential) as provider:
                events = provider.stream_chat(self.parsed.call)
                try:
                    if self.parsed.stream:
                        await self._stream(events)
                    else:
                        await self._complete(events)
                finally:
                    await events.aclose()  # closes the upstream call, whatever ended the request
        except asyncio.CancelledError:
            if not self.disconnected:
                raise
            task.uncancel()
            cancelled = Cancelled("the client closed the connection")
            access_log.record(self.context, cancelled.status, 499, self.first_output_ns)
        except GatewayError as error:
            await self._fail(error)
        except Exception as exc:
            logger.exception("chat completion %s failed unexpectedly", self.context.request_id)
            await self._fail(Internal(f"unexpected {type(exc).__name__}"))
        finally:
            guard.cancel()

    async def _stream(self, events: ChatStream) -> None:
        encoder = openai_sse.ChunkEncoder(
            self.context.request_id, self.parsed.model, include_usage=self.parsed.include_usage
        )
        async for event in events:
            if not self.first_output_ns:
                self.first_output_ns = time.perf_counter_ns()
            if isinstance(event, TextDelta):
                await self._write(encoder.text(event.text))
            elif isinstance(event, ToolCallDelta):
                await self._write(encoder.tool_call(event))
            elif isinstance(event, ChatFinished):
                tail = encoder.finish(event.finish_reason)
                if self.parsed.include_usage:
                    tail += encoder.usage(event.usage)
                await self._write(tail + openai_sse.DONE, last=True)
                access_log.record(self.context, "OK", 200, self.first_output_ns)
                return
        raise Internal(f"provider {self.context.provider!r} ended its stream without finishing")

    async def _complete(self, events: ChatStream) -> None:
        reply = _Reply()
        async for event in events:
            if not self.first_output_ns:
                self.first_output_ns = time.perf_counter_ns()
            if isinstance(event, TextDelta):
                reply.text.append(event.text)
            elif isinstance(event, ToolCallDelta):
                reply.add(event)
            elif isinstance(event, ChatFinished):
                body = openai_sse.chat_completion(
                    self.context.request_id,
                    self.parsed.model,
                    "".join(reply.text),
                    reply.tool_calls(),
                    event.finish_reason,
                    event.usage,
                )
                self.finished = True
                await self._start(200, _JSON_HEADERS)
                await self._send({"type": "http.response.body", "body": body})
                access_log.record(self.context, "OK", 200, self.first_output_ns)
                return
        raise Internal(f"provider {self.context.provider!r} ended its stream without finishing")

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def _write(self, data: bytes, *, last: bool = False) -> None:
        if last:
            self.finished = True
        if not self.started:
            await self._start(200, _SSE_HEADERS)
        self.last_write = time.monotonic()
        await self._send({"type": "http.response.body", "body": data, "more_body": not last})

    async def _fail(self, error: GatewayError) -> None:
        access_log.record(self.context, error.status, openai_errors.http_status(error), self.first_output_ns)
        if self.finished:
            return
        if self.started:  # the stream is under way: an error event, then the end (no [DONE])
            await self._write(openai_errors.sse_error_event(error), last=True)
            return
        self.finished = True
        response = openai_errors.error_response(error)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        await self._start(response.status_code, headers)
        await self._send({"type": "http.response.body", "body": response.body})

    async def _guard(self, receive: Receive, task: asyncio.Task[None]) -> None:
        """Cancel `task` when the client disconnects; ping an idle stream."""
        while True:
            try:
                async with asyncio.timeout(self.ping_s):
                    message = await receive()
            except TimeoutError:
                if not self.finished and time.monotonic() - self.last_write >= 0.9 * (self.ping_s or 0):
                    with contextlib.suppress(OSError):
                        await self._write(openai_sse.PING)
                continue
            if message["type"] == "http.disconnect":
                if not self.finished:
                    self.disconnected = True
                    task.cancel()
                return
