"""The `grpc.aio.ServicerContext` stand-in the gRPC-JSON bridge hands to the real gRPC handlers.

It implements what handlers use (the gateway calls `invocation_metadata`, `peer`, `auth_context`, `time_remaining`,
`abort_with_status` and `write`; the rest is there for other servicers): the metadata comes from the HTTP headers
or the WebSocket's auth (``integration_api.http.auth.grpc_metadata``), `write` hands a response to the bridge, and
an abort raises `RpcAbort` carrying the code, the details and the `google.rpc` status details, as grpc's own abort
raises to end the RPC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from integration_api.errors import GatewayError
from integration_api.status import rich_status

STATUS_DETAILS_KEY = "grpc-status-details-bin"  # where grpc_status puts the google.rpc.Status of a rich error
GRPC_TIMEOUT_HEADER = "grpc-timeout"
# gRPC's timeout header: up to 8 digits and a unit (Hours, Minutes, Seconds, milli, micro, nano).
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNIT_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

Write = Callable[[Any], Awaitable[None]]


class RpcAbort(Exception):
    """An RPC ended with a non-OK status: its code, details and google.rpc status details (packed Any messages).

    `http_status` is set only by the bridge's own refusals that have a more precise HTTP status than the code's
    (413 for a body over the size limit); otherwise the status details or the code decide.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        status_details: Sequence[any_pb2.Any] = (),
        *,
        http_status: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.status_details = list(status_details)
        self.http_status = http_status


def abort_for(error: GatewayError) -> RpcAbort:
    """The abort a handler raising `error` would end with (the status `integration_api.status` builds)."""
    status = rich_status(error)
    return RpcAbort(status.code, status.details, _details_of(status.trailing_metadata or ()))


def parse_grpc_timeout(value: str | None) -> float | None:
    """Seconds of a `grpc-timeout` value (``"10S"``, ``"500m"``), or None when absent or malformed."""
    match = _TIMEOUT.match(value.strip()) if value else None
    if match is None:
        return None
    return int(match.group(1)) * _TIMEOUT_UNIT_S[match.group(2)]


def _details_of(trailing_metadata: Sequence[tuple[str, str | bytes]]) -> list[any_pb2.Any]:
    for key, value in trailing_metadata:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return list(status_pb2.Status.FromString(value).details)
    return []


class BridgeContext:
    """The servicer context of one bridged call."""

    def __init__(
        self,
        metadata: Sequence[tuple[str, str]],
        peer: str,
        *,
        timeout_s: float | None = None,
        write: Write | None = None,
    ) -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._write = write
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self._done = False
        self._cancelled = False
        self._callbacks: list[Callable[[BridgeContext], object]] = []

    # --- what the gateway uses ---------------------------------------------------------------------------------

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        """No client certificate reaches a handler over HTTP: callers authenticate with a key or token."""
        return {}

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> NoReturn:
        raise RpcAbort(code, details, _details_of(trailing_metadata))

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise RpcAbort(status.code, status.details, _details_of(status.trailing_metadata or ()))

    async def write(self, message: Any) -> None:
        if self._write is None:
            raise RuntimeError("write() is for RPCs with a response stream")
        await self._write(message)

    # --- the rest of grpc.aio.ServicerContext that servicers commonly call ------------------------------------

    async def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, str]]) -> None:
        """Nothing to send: HTTP response headers go out with the first response (or the error)."""

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._trailing = tuple(trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[BridgeContext], object]) -> None:
        self._callbacks.append(callback)

    # --- for the bridge ----------------------------------------------------------------------------------------

    def outcome(self) -> RpcAbort | None:
        """The error a handler that returned normally left with `set_code` (None: it succeeded)."""
        if self._code is None or self._code == grpc.StatusCode.OK:
            return None
        return RpcAbort(self._code, self._details, _details_of(self._trailing))

    def finish(self, *, cancelled: bool = False) -> None:
        """The call is over (cancelled: the client went away first); runs the done callbacks once."""
        if self._done:
            return
        self._done = True
        self._cancelled = cancelled
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
