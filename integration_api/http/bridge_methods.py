"""The bridged methods: each registered gRPC handler with its message types, and how the bridge calls it.

Driven by the service descriptors: every method of every service in the table the gRPC server registers
(``integration_api.services.service_handlers``, plus any extra service) becomes a `BridgedMethod`. A request
travels as the protobuf JSON mapping (camelCase) and is parsed into the method's input type, serialized, and
handed to the handler through its own `request_deserializer` (or as the raw bytes when it has none, as
StreamChat does); a response goes through the handler's `response_serializer` (raw bytes when it has none) and is
parsed into the method's output type before it becomes JSON. So the handler sees exactly what gRPC would give it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from integration_api.http.bridge_context import BridgeContext, RpcAbort
from integration_api.status import ERROR_DOMAIN

logger = logging.getLogger(__name__)

# Full service name -> (its descriptor, method name -> the handler the gRPC server registers for it).
BridgeServices = Mapping[str, tuple[ServiceDescriptor, Mapping[str, grpc.RpcMethodHandler]]]
Json = dict[str, Any]
Emit = Callable[[Json], Awaitable[None]]

# The HTTP status of each gRPC code (as grpc-gateway maps them); our own errors carry theirs in ErrorInfo.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class BadMessage(Exception):
    """A client message that is not JSON or not the method's input type (INVALID_ARGUMENT, for that message)."""


@dataclass(frozen=True, slots=True)
class BridgedMethod:
    """One gRPC method as the bridge serves it."""

    path: str  # /{package}.{Service}/{Method}, the gRPC path
    descriptor: MethodDescriptor
    handler: grpc.RpcMethodHandler
    input_class: type[Message]
    output_class: type[Message]

    @property
    def client_streaming(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def kind(self) -> str:
        return {
            (False, False): "unary",
            (False, True): "server streaming",
            (True, False): "client streaming",
            (True, True): "bidirectional streaming",
        }[(self.client_streaming, self.server_streaming)]

    def decode(self, document: object) -> Any:
        """What the handler takes for one request, from its JSON document (raises `BadMessage`)."""
        if not isinstance(document, dict):
            raise BadMessage(f"a {self.input_class.DESCRIPTOR.full_name} must be a JSON object")
        try:
            message = json_format.ParseDict(document, self.input_class())
        except json_format.ParseError as error:
            raise BadMessage(f"not a valid {self.input_class.DESCRIPTOR.full_name}: {error}") from error
        raw = message.SerializeToString()
        deserializer = self.handler.request_deserializer
        return raw if deserializer is None else deserializer(raw)

    def decode_text(self, text: str | bytes) -> Any:
        return self.decode(parse_json(text))

    def encode(self, response: Any) -> Json:
        """The JSON document of one response the handler produced."""
        serializer = self.handler.response_serializer
        raw = response if serializer is None else serializer(response)
        return json_format.MessageToDict(self.output_class.FromString(raw))


def parse_json(text: str | bytes) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadMessage(f"malformed JSON: {error}") from error


def bridged_methods(services: BridgeServices) -> list[BridgedMethod]:
    """Every method of `services` that has a registered handler."""
    methods = []
    for full_name, (service, handlers) in services.items():
        for method in service.methods:
            handler = handlers.get(method.name)
            if handler is None:
                continue
            methods.append(
                BridgedMethod(
                    f"/{full_name}/{method.name}",
                    method,
                    handler,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                )
            )
    return methods


def _behaviour(method: BridgedMethod) -> Callable[..., Any]:
    handler = method.handler
    if method.client_streaming:
        return handler.stream_stream if method.server_streaming else handler.stream_unary  # type: ignore[no-any-return]
    return handler.unary_stream if method.server_streaming else handler.unary_unary  # type: ignore[no-any-return]


async def call_handler(
    method: BridgedMethod, request: Any, context: BridgeContext, emit: Emit, timeout_s: float | None = None
) -> None:
    """Run the registered handler on `request` (a message, or an async iterator of them for client streaming),
    giving each response's JSON to `emit`; a non-OK end raises `RpcAbort`, as grpc ends the RPC with it.

    A response stream may be written with `context.write` (the gateway's StreamChat) or yielded (an async
    generator); a unary response is returned.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await _run(method, request, context, emit)
    except TimeoutError as error:
        raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from error
    except (RpcAbort, asyncio.CancelledError):
        raise
    except Exception as exc:  # grpc too turns an escaped exception into UNKNOWN, never a crash
        logger.exception("bridged %s failed unexpectedly", method.path)
        raise RpcAbort(grpc.StatusCode.UNKNOWN, f"unexpected {type(exc).__name__}") from exc
    outcome = context.outcome()
    if outcome is not None:
        raise outcome


async def _run(method: BridgedMethod, request: Any, context: BridgeContext, emit: Emit) -> None:
    result = _behaviour(method)(request, context)
    if hasattr(result, "__aiter__"):
        async for response in result:
            await emit(method.encode(response))
        return
    if inspect.isawaitable(result):
        result = await result
    if result is not None:
        await emit(method.encode(result))
    elif not method.server_streaming and context.outcome() is None:
        raise RpcAbort(grpc.StatusCode.INTERNAL, f"the handler of {method.path} returned no response")


# --- statuses as JSON ---------------------------------------------------------------------------------------


def http_status(abort: RpcAbort) -> int:
    """The HTTP status of an RPC's end: our own errors say theirs (in ErrorInfo), others map by code."""
    if abort.http_status is not None:
        return abort.http_status
    for detail in abort.status_details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN and info.metadata.get("http_status", "").isdigit():
                return int(info.metadata["http_status"])
    return HTTP_STATUS.get(abort.code, 500)


def retry_after_s(abort: RpcAbort) -> float | None:
    """The RetryInfo delay of an RPC's end, in seconds, when it has one."""
    for detail in abort.status_details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def error_document(abort: RpcAbort) -> Json:
    """The JSON body of a failed RPC: its code's name, its message and its google.rpc details."""
    return {
        "code": abort.code.name,
        "message": abort.details,
        "details": [json_format.MessageToDict(detail) for detail in abort.status_details],
    }


def status_document(abort: RpcAbort | None) -> Json:
    """The status that ends a stream (SSE `event: status`, WebSocket `$status`)."""
    if abort is None:
        return {"code": "OK", "message": "", "httpStatus": 200}
    return {**error_document(abort), "httpStatus": http_status(abort)}


def dumps(document: object) -> bytes:
    return orjson.dumps(document)
