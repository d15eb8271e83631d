"""The transport: the one layer that talks gRPC, and the only place gRPC errors become client exceptions.

`AsyncTransport` is what the client needs from a connection: unary calls (UnifiedProviderService's and
SessionService's, by method name), StreamChat calls, a readiness wait and the health check, all in terms of
protocol messages. `GrpcTransport` is the real one; the fake client in
``integration_api.testing`` implements the same protocol in memory, so both run the very same client code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from integration_api.client._config import ConnectionConfig
from integration_api.client._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ServiceUnavailableError,
    UnimplementedError,
    error_class_for_status,
)
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc

# The methods of SessionService (the rest are UnifiedProviderService's); kept here, not imported, so that the
# transport stays below every other client module.
SESSION_METHODS = frozenset({"CreateSession", "GetSessionInfo", "ListSessions", "DeleteSession", "GetServerStats"})

ResponseT = TypeVar("ResponseT", bound=Message)
GATEWAY_ERROR_DOMAIN = "integration-api"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_DIAGNOSE_S = 5.0


class StreamCall(Protocol):
    """One open StreamChat call."""

    def frames(self) -> AsyncIterator[pb.ChatResponse]:
        """The frames, until the server ends the call; failures raise `APIError`s."""
        ...

    def cancel(self) -> None: ...


class AsyncTransport(Protocol):
    """What the client needs from a connection to the gateway."""

    target: str

    async def unary(
        self, method: str, request: Message, response_type: type[ResponseT], *, deadline: float | None
    ) -> ResponseT: ...

    def open_stream(self, requests: AsyncIterator[pb.ChatRequest]) -> StreamCall: ...

    async def wait_for_ready(self, within: float) -> None: ...

    async def check_health(self, deadline: float | None) -> None: ...

    async def aclose(self) -> None: ...


# --- gRPC errors ----------------------------------------------------------------------------------------------


def _gateway_details(error: grpc.aio.AioRpcError) -> tuple[dict[str, str] | None, float | None]:
    """The gateway's ErrorInfo metadata (None when the status did not come from the gateway) and RetryInfo."""
    info: dict[str, str] | None = None
    retry_after: float | None = None
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            error_info = error_details_pb2.ErrorInfo()
            retry_info = error_details_pb2.RetryInfo()
            if detail.Unpack(error_info) and error_info.domain == GATEWAY_ERROR_DOMAIN:
                info = dict(error_info.metadata)
            elif detail.Unpack(retry_info):
                retry_after = retry_info.retry_delay.ToNanoseconds() / 1e9
    return info, retry_after


def error_from_rpc(error: grpc.aio.AioRpcError, target: str) -> APIError:
    """The client exception for a failed gRPC call."""
    status = error.code().name
    details = error.details() or status
    info, retry_after = _gateway_details(error)
    if info is None and status == "UNAVAILABLE":
        return APIConnectionError(f"could not reach the integration-api gateway at {target}: {details}")
    if info is None and status == "DEADLINE_EXCEEDED":
        return APITimeoutError(f"the call to the gateway at {target} did not finish within its timeout")
    info = info or {}
    http_status = info.get("http_status", "")
    return error_class_for_status(status)(
        details,
        code=int(http_status) if http_status.isdigit() else None,
        retryable=info["retryable"] == "true" if "retryable" in info else None,
        retry_after=retry_after,
    )


def _hidden_by_core(error: grpc.aio.AioRpcError) -> bool:
    """An INTERNAL status made up by the gRPC library, not sent by the gateway (whose statuses carry ErrorInfo).

    It happens when a write races with the server ending the call (e.g. refusing the stream's credentials): the
    failed write replaces the server's status with "Internal error from Core".
    """
    return error.code() == grpc.StatusCode.INTERNAL and _gateway_details(error)[0] is None


@contextmanager
def map_grpc_errors(target: str) -> Iterator[None]:
    """Translate gRPC failures into client exceptions, once, here."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc, target) from exc


# --- the real transport ---------------------------------------------------------------------------------------


class GrpcStreamCall:
    def __init__(
        self, call: grpc.aio.StreamStreamCall, target: str, diagnose: Callable[[], Awaitable[APIError | None]]
    ) -> None:
        self._call = call
        self._target = target
        self._diagnose = diagnose

    async def frames(self) -> AsyncIterator[pb.ChatResponse]:
        received = False
        try:
            async for frame in self._call:
                received = True
                yield frame
        except grpc.aio.AioRpcError as exc:
            error = error_from_rpc(exc, self._target)
            if not received and _hidden_by_core(exc):
                error = await self._diagnose() or error
            elif _hidden_by_core(exc):
                # The server ended a working call (a drain, the stream's age) as a request was being written
                # (seen through nginx): a broken stream, which the stream reconnects, not a gateway failure.
                error = APIConnectionError(f"the call to {self._target} ended abruptly ({exc.details()})")
            raise error from exc

    def cancel(self) -> None:
        self._call.cancel()


class GrpcTransport:
    """A gRPC channel to the gateway's UnifiedProviderService, opened lazily inside the running event loop."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.target = config.target
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.UnifiedProviderServiceStub | None = None
        self._sessions: pb_grpc.SessionServiceStub | None = None

    def _channel_and_stub(self) -> tuple[grpc.aio.Channel, pb_grpc.UnifiedProviderServiceStub]:
        if self._channel is None or self._stub is None:
            self._channel = self.config.create_channel()
            self._stub = pb_grpc.UnifiedProviderServiceStub(self._channel)
            self._sessions = pb_grpc.SessionServiceStub(self._channel)
        return self._channel, self._stub

    def _stub_for(self, method: str) -> object:
        """The stub serving `method`: SessionService's methods have names of their own, the rest are Unified's."""
        _, stub = self._channel_and_stub()
        return self._sessions if method in SESSION_METHODS else stub

    async def unary(
        self, method: str, request: Message, response_type: type[ResponseT], *, deadline: float | None
    ) -> ResponseT:
        stub = self._stub_for(method)
        with map_grpc_errors(self.target):
            response = await getattr(stub, method)(request, timeout=deadline, metadata=self.config.metadata)
        if not isinstance(response, response_type):
            raise TypeError(f"{method} answered {type(response).__name__}, expected {response_type.__name__}")
        return response

    def open_stream(self, requests: AsyncIterator[pb.ChatRequest]) -> StreamCall:
        _, stub = self._channel_and_stub()
        call = stub.StreamChat(requests, metadata=self.config.metadata)
        return GrpcStreamCall(call, self.target, self._diagnose_stream_failure)

    async def _diagnose_stream_failure(self) -> APIError | None:
        """The gateway's own answer to these credentials (a cheap authenticated unary call), when it is an error."""
        try:
            await self.unary("GetVersion", pb.GetVersionRequest(), pb.GetVersionResponse, deadline=_DIAGNOSE_S)
        except UnimplementedError:
            return None
        except APIError as error:
            return error
        return None

    async def wait_for_ready(self, within: float) -> None:
        channel, _ = self._channel_and_stub()
        try:
            await asyncio.wait_for(channel.channel_ready(), within)
        except TimeoutError:
            raise APIConnectionError(f"the gateway at {self.target} was not reachable within {within:g} s") from None

    async def check_health(self, deadline: float | None) -> None:
        channel, _ = self._channel_and_stub()
        with map_grpc_errors(self.target):
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=deadline, metadata=self.config.metadata
            )
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            state = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise ServiceUnavailableError(f"the gateway at {self.target} is reachable but reports {state}")

    async def aclose(self) -> None:
        channel, self._channel, self._stub, self._sessions = self._channel, None, None, None
        if channel is not None:
            await channel.close()
