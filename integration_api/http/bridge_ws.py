"""The WebSocket half of the gRPC-JSON bridge: client-streaming and bidirectional methods (StreamChat).

One socket is one RPC. Every WebSocket message is one JSON text message: a protobuf message in the JSON mapping,
or a control message, an object whose only key starts with ``$`` (docs/bridge.md has the whole framing):

- client -> server: requests; ``{"$auth": {"x-api-key": "ia_..."}}`` as the first message when the upgrade carried
  no credential (browsers cannot set WebSocket headers; the subprotocol ``integration-api.bearer.<token>`` is the
  other way); ``{"$end": true}`` to half-close;
- server -> client: responses; ``{"$error": {...}}`` for one bad client message (the socket stays open);
  ``{"$status": {...}}`` last, then the close (1000; 1008 when the credentials were refused).

The socket closing before the RPC ended cancels the handler, which closes every upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from auth.authenticator import API_KEY_HEADER, SERVICE_KEY_HEADER
from integration_api.http.auth import grpc_metadata, peer_of
from integration_api.http.bridge_context import GRPC_TIMEOUT_HEADER, BridgeContext, RpcAbort, parse_grpc_timeout
from integration_api.http.bridge_methods import (
    BadMessage,
    BridgedMethod,
    Json,
    call_handler,
    dumps,
    error_document,
    http_status,
    parse_json,
    status_document,
)

SUBPROTOCOL_PREFIX = "integration-api.bearer."
AUTH_KEY = "$auth"
END_KEY = "$end"
ERROR_KEY = "$error"
STATUS_KEY = "$status"
CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008  # the credentials were refused
_CREDENTIAL_KEYS = frozenset({API_KEY_HEADER, SERVICE_KEY_HEADER})
_REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


async def refuse_websocket(scope: Scope, receive: Receive, send: Send, abort: RpcAbort) -> None:
    """Refuse an upgrade with an HTTP status and the JSON error body (where the server can send one), else close."""
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        body = dumps(error_document(abort))
        await websocket.send_denial_response(Response(body, http_status(abort), media_type="application/json"))
    else:
        await websocket.close(CLOSE_POLICY_VIOLATION)


def _control_key(document: object) -> str | None:
    """The `$` key of a control message, or None for a protobuf message."""
    if isinstance(document, dict) and len(document) == 1:
        (key,) = document
        if isinstance(key, str) and key.startswith("$"):
            return key
    return None


def _bearer_subprotocol(offered: Sequence[str]) -> str | None:
    return next((name for name in offered if name.startswith(SUBPROTOCOL_PREFIX)), None)


class WebSocketEndpoint:
    """The WebSocket of one method (refused with a hint for methods without a request stream)."""

    def __init__(self, method: BridgedMethod, limit: int) -> None:
        self.method = method
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = self.method
        if not method.client_streaming:
            hint = f"{method.path} is a {method.kind} gRPC method: POST its JSON request instead (see docs/bridge.md)"
            await refuse_websocket(scope, receive, send, RpcAbort(grpc.StatusCode.UNIMPLEMENTED, hint, http_status=405))
            return
        websocket = WebSocket(scope, receive, send)
        metadata = grpc_metadata(websocket.headers)
        subprotocol = _bearer_subprotocol(scope.get("subprotocols", ()))
        if subprotocol is not None:
            metadata += grpc_metadata([("authorization", f"Bearer {subprotocol[len(SUBPROTOCOL_PREFIX) :]}")])
        await websocket.accept(subprotocol=subprotocol)
        await _Socket(websocket, method, self.limit).serve(metadata)


class _Socket:
    """One RPC over one accepted WebSocket."""

    def __init__(self, websocket: WebSocket, method: BridgedMethod, limit: int) -> None:
        self.websocket = websocket
        self.method = method
        self.limit = limit
        self._sending = asyncio.Lock()  # responses (the handler) and $error (the reader) interleave whole
        self._handler: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None  # after $end: notices the socket closing
        self._first: object = None  # a first message that turned out to be a request, not $auth
        self.disconnected = False

    async def _send(self, document: Json) -> None:
        text = dumps(document).decode()
        try:
            async with self._sending:
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, WebSocketDisconnected) as gone:
            # The client went away while we wrote: that is a cancel (the reader may not have seen it yet).
            self.disconnected = True
            self._cancel_handler()
            raise asyncio.CancelledError from gone

    async def _bad(self, code: grpc.StatusCode, message: str) -> None:
        await self._send({ERROR_KEY: {"code": code.name, "message": message}})

    async def _receive(self) -> object | None:
        """The next client message, parsed (None: the client went away; a bad one is answered and skipped)."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.disconnected = True
                return None
            raw: str | bytes = message.get("text") or message.get("bytes") or b""
            if len(raw) > self.limit:
                await self._bad(grpc.StatusCode.RESOURCE_EXHAUSTED, f"a message is larger than {self.limit} bytes")
                continue
            try:
                return parse_json(raw)
            except BadMessage as error:
                await self._bad(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    async def _authenticate(self, metadata: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        """The metadata, with the first message's `$auth` when the upgrade carried no credential (None: gone)."""
        if any(key in _CREDENTIAL_KEYS for key, _ in metadata):
            return metadata
        first = await self._receive()
        if first is None:
            return None
        if _control_key(first) != AUTH_KEY:
            self._first = first  # no credential at all: the handler refuses it (or auth is disabled)
            return metadata
        assert isinstance(first, dict)
        fields = first[AUTH_KEY]
        if isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values()):
            return metadata + grpc_metadata([(str(k), v) for k, v in fields.items()])
        await self._bad(grpc.StatusCode.INVALID_ARGUMENT, '"$auth" takes an object of header names to strings')
        return metadata

    async def _requests(self) -> AsyncIterator[Any]:
        """The request stream the handler reads, until `$end`; the socket closing cancels the RPC."""
        pending, self._first = self._first, None
        while True:
            document = pending if pending is not None else await self._receive()
            pending = None
            if document is None:
                self._cancel_handler()
                raise asyncio.CancelledError  # the client went away: this is a cancel, not a half-close
            key = _control_key(document)
            if key == END_KEY:
                self._watch = asyncio.ensure_future(self._watch_after_end())
                return
            if key is not None:
                where = "only as the first message" if key == AUTH_KEY else "not a control message"
                await self._bad(grpc.StatusCode.INVALID_ARGUMENT, f"{key!r}: {where}")
                continue
            try:
                request = self.method.decode(document)
            except BadMessage as error:
                await self._bad(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                continue
            yield request

    def _cancel_handler(self) -> None:
        if self._handler is not None:
            self._handler.cancel()

    async def _watch_after_end(self) -> None:
        """After the half-close, nothing reads the socket: watch it, so closing it still cancels the RPC."""
        while (document := await self._receive()) is not None:
            await self._bad(grpc.StatusCode.INVALID_ARGUMENT, f"{_control_key(document) or 'a request'} after $end")
        self._cancel_handler()

    async def write(self, message: Any) -> None:
        """`context.write`: one response the handler writes (StreamChat's frames)."""
        await self._send(self.method.encode(message))

    async def serve(self, upgrade_metadata: list[tuple[str, str]]) -> None:
        metadata = await self._authenticate(upgrade_metadata)
        if metadata is None:
            return
        websocket = self.websocket
        timeout_s = parse_grpc_timeout(websocket.headers.get(GRPC_TIMEOUT_HEADER))
        context = BridgeContext(metadata, peer_of(websocket.scope.get("client")), timeout_s=timeout_s, write=self.write)
        requests = self._requests()
        handler = self._handler = asyncio.ensure_future(
            call_handler(self.method, requests, context, self._send, timeout_s)
        )
        abort: RpcAbort | None = None
        try:
            await handler
        except RpcAbort as error:
            abort = error
        except asyncio.CancelledError:
            if not self.disconnected:
                raise  # this endpoint is being cancelled (the server stops), not the client gone
            return
        finally:
            await self._cleanup(handler, requests)
            context.finish(cancelled=self.disconnected)
        await self._end(abort)

    async def _cleanup(self, handler: asyncio.Task[None], requests: AsyncIterator[Any]) -> None:
        for task in (handler, self._watch):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # The handler's reader may still be inside the request stream as it winds down; it then closes itself.
        with contextlib.suppress(RuntimeError):
            await requests.aclose()  # type: ignore[attr-defined]

    async def _end(self, abort: RpcAbort | None) -> None:
        code = CLOSE_POLICY_VIOLATION if abort is not None and abort.code in _REFUSED else CLOSE_NORMAL
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):  # the client may be gone already
            async with self._sending:
                await self.websocket.send_text(dumps({STATUS_KEY: status_document(abort)}).decode())
            await self.websocket.close(code)
