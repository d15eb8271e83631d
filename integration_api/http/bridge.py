"""The gRPC-JSON bridge: every RPC the gRPC server registers, reachable over HTTP and WebSocket at its gRPC path.

``bridge_routes(gateway: Gateway, services: BridgeServices) -> list[BaseRoute]`` is what ``app.py`` mounts;
`services` is ``integration_api.services.service_handlers(gateway)`` (the very handlers the gRPC server
registers), plus any extra service (the tests bridge a small one with server- and client-streaming methods).
For each method, at ``/{package}.{Service}/{Method}`` (``integration_api.http.bridge_methods`` does the calls):

- unary: ``POST`` a JSON request (protobuf JSON mapping) -> the JSON response, or an error body
  ``{"code", "message", "details"}`` with the HTTP status of the gRPC status;
- server streaming: ``POST`` -> ``text/event-stream``: one ``data:`` event per response, then ``event: status``;
- client streaming and bidirectional: a WebSocket on the same path (``integration_api.http.bridge_ws``).

Auth is the gRPC metadata, from the headers (``integration_api.http.auth.grpc_metadata``): the handlers
authenticate exactly as on gRPC. A GET (a browser) is 405 with a hint, an unknown method path is 404, a body over
``max_message_bytes`` is 413. A client that disconnects cancels the handler, which closes every upstream call.
The framing is in docs/bridge.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import grpc
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from integration_api.errors import GatewayError
from integration_api.gateway import Gateway
from integration_api.http.auth import grpc_metadata, peer_of
from integration_api.http.bridge_context import (
    GRPC_TIMEOUT_HEADER,
    BridgeContext,
    RpcAbort,
    abort_for,
    parse_grpc_timeout,
)
from integration_api.http.bridge_methods import (
    BadMessage,
    BridgedMethod,
    BridgeServices,
    Json,
    bridged_methods,
    call_handler,
    dumps,
    error_document,
    http_status,
    retry_after_s,
    status_document,
)
from integration_api.http.bridge_ws import WebSocketEndpoint, refuse_websocket
from integration_api.http.limits import DISCARD_FACTOR, RequestTooLarge

__all__ = ["BridgeServices", "bridge_routes"]

# A gRPC path: a dotted (package-qualified) service name, then a method name.
_GRPC_PATH = re.compile(r"^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+/[A-Za-z_][A-Za-z0-9_]*$")
_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies (nginx) must pass each event on at once
]


def bridge_routes(gateway: Gateway, services: BridgeServices) -> list[BaseRoute]:
    """Two routes per bridged method (HTTP, WebSocket: each answers the kinds it does not serve with 405 and a
    hint), then a JSON 404 for any other gRPC-shaped path."""
    limit = gateway.settings.max_message_bytes
    routes: list[BaseRoute] = []
    for method in bridged_methods(services):
        routes.append(Route(method.path, _PostEndpoint(method, limit)))
        routes.append(WebSocketRoute(method.path, WebSocketEndpoint(method, limit)))
    routes.append(_UnknownMethodRoute())
    return routes


async def _send_json(send: Send, status: int, document: Json, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = dumps(document)
    start_headers = [_JSON, (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, abort: RpcAbort, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    extra = list(headers)
    retry_after = retry_after_s(abort)
    if retry_after is not None:
        extra.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await _send_json(send, http_status(abort), error_document(abort), extra)


def _hint(method: BridgedMethod) -> str:
    if method.client_streaming:
        return f"{method.path} is a {method.kind} gRPC method: open a WebSocket on this path (see docs/bridge.md)"
    answer = "a JSON response" if not method.server_streaming else "a text/event-stream of JSON responses"
    request = method.input_class.DESCRIPTOR.full_name
    return f"{method.path} is a {method.kind} gRPC method: POST a JSON {request} to this path for {answer}"


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def _read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (by its Content-Length, or as it arrives)."""
    declared = headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        try:
            message = await receive()
        except GatewayError as error:  # the app's body limit (integration_api.http.limits) refused it first
            raise abort_for(error) from error
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit or (declared.isdigit() and int(declared) > limit):
            if more:
                await _discard(receive, DISCARD_FACTOR * limit - size)
            raise abort_for(RequestTooLarge(f"the request body is larger than the {limit}-byte message limit"))
        chunks.append(chunk)
    return b"".join(chunks)


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a refused body (up to `budget` bytes): a server that answers while the client is
    still sending makes the client's kernel reset the connection, and the client never sees the 413."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


async def _until_disconnected(receive: Receive) -> None:
    """Returns when the client goes away (after the body, uvicorn's receive() waits for exactly that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _PostEndpoint:
    """POST for a unary or server-streaming method (405 with a hint for anything else)."""

    def __init__(self, method: BridgedMethod, limit: int) -> None:
        self.method = method
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = self.method
        if scope["method"] != "POST" or method.client_streaming:
            allow = b"GET" if method.client_streaming else b"POST"  # GET meaning the WebSocket upgrade
            abort = RpcAbort(grpc.StatusCode.UNIMPLEMENTED, _hint(method), http_status=405)
            await _send_error(send, abort, [(b"allow", allow)])
            return
        headers = Headers(scope=scope)
        try:
            body = await _read_body(receive, headers, self.limit)
            request = method.decode_text(body or b"{}")  # an empty body is the empty message (GetVersion)
        except BadMessage as error:
            await _send_error(send, RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, str(error)))
            return
        except RpcAbort as abort:
            await _send_error(send, abort)
            return
        except _ClientGone:
            return
        timeout_s = parse_grpc_timeout(headers.get(GRPC_TIMEOUT_HEADER))
        call = _SseCall(send, method) if method.server_streaming else _UnaryCall(send, method)
        context = BridgeContext(
            grpc_metadata(headers), peer_of(scope.get("client")), timeout_s=timeout_s, write=call.write
        )
        work = asyncio.ensure_future(call.run(request, context, timeout_s))
        watch = asyncio.ensure_future(_until_disconnected(receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            cancelled = not work.done()
            if cancelled:
                work.cancel()  # the client went away: the handler closes its upstream calls
            await asyncio.gather(work, return_exceptions=True)
            context.finish(cancelled=cancelled)
        if not cancelled:
            work.result()  # a failure to write the response is the server's to see


class _UnaryCall:
    """A unary response as one JSON body (or the error body)."""

    write = None  # a unary handler returns its response

    def __init__(self, send: Send, method: BridgedMethod) -> None:
        self._send = send
        self._method = method
        self._response: Json | None = None

    async def _keep(self, document: Json) -> None:
        self._response = document

    async def run(self, request: Any, context: BridgeContext, timeout_s: float | None) -> None:
        try:
            await call_handler(self._method, request, context, self._keep, timeout_s)
        except RpcAbort as abort:
            await _send_error(self._send, abort)
            return
        await _send_json(self._send, 200, self._response or {})


class _SseCall:
    """A server-streaming response as SSE. Headers wait for the first response, so a call refused at once
    (UNAUTHENTICATED...) still gets its HTTP status and JSON error body; after that, the status is the last event."""

    def __init__(self, send: Send, method: BridgedMethod) -> None:
        self._send = send
        self._method = method
        self._started = False

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

    async def _event(self, document: Json) -> None:
        await self._start()
        await self._send(
            {"type": "http.response.body", "body": b"data: " + dumps(document) + b"\n\n", "more_body": True}
        )

    async def write(self, message: Any) -> None:
        """`context.write`: a response the handler writes instead of yielding it."""
        await self._event(self._method.encode(message))

    async def run(self, request: Any, context: BridgeContext, timeout_s: float | None) -> None:
        abort: RpcAbort | None = None
        try:
            await call_handler(self._method, request, context, self._event, timeout_s)
        except RpcAbort as error:
            if not self._started:
                await _send_error(self._send, error)
                return
            abort = error
        await self._start()
        status = b"event: status\ndata: " + dumps(status_document(abort)) + b"\n\n"
        await self._send({"type": "http.response.body", "body": status, "more_body": False})


class _UnknownMethodRoute(BaseRoute):
    """A gRPC-shaped path no bridged method has: 404 with a JSON body (HTTP) or a refused upgrade (WebSocket)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket") and _GRPC_PATH.match(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        service, method = scope["path"].lstrip("/").split("/")
        abort = RpcAbort(grpc.StatusCode.UNIMPLEMENTED, f"no method {method!r} on service {service!r}", http_status=404)
        if scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send, abort)
        else:
            await _send_error(send, abort)
