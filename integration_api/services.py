"""The gRPC services: each is a thin binding of the `Gateway` to one provider name.

`ProviderService` implements every RPC once; it is registered under each per-provider service of the
protocol (exposing only the RPCs that service declares in the .proto) and under `UnifiedProviderService`
(provider chosen per request by `providerName`). `SessionService` (``integration_api.sessions.service``) is
bound to the same gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from integration_api.gateway import Gateway
from integration_api.proto import integration_api_pb2 as pb
from integration_api.routing.service import get_routes
from integration_api.sessions.service import SERVICE as SESSION_SERVICE
from integration_api.sessions.service import SessionServicer
from providers.vendors import VENDORS

# Full service name -> (its descriptor, method name -> the handler registered for it).
ServiceHandlers = dict[str, tuple[ServiceDescriptor, dict[str, grpc.RpcMethodHandler]]]

# Per-provider services of the protocol and the provider each one is bound to (from the vendor table).
PROVIDER_SERVICES: dict[str, str] = {vendor.service: vendor.name for vendor in VENDORS}
UNIFIED_SERVICE = "UnifiedProviderService"


class ProviderService:
    """Every RPC of the protocol, bound to `provider` (None: the request's `providerName` decides)."""

    def __init__(self, gateway: Gateway, provider: str | None) -> None:
        self._gateway = gateway
        self._provider = provider

    async def StreamChat(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        await self._gateway.stream_chat_bidirectional(request_iterator, context, self._provider)

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        return await self._gateway.chat(request, context, self._provider)

    async def Embedding(self, request: pb.EmbeddingRequest, context: grpc.aio.ServicerContext) -> pb.EmbeddingResponse:
        return await self._gateway.embedding(request, context, self._provider)

    async def Reranking(self, request: pb.RerankingRequest, context: grpc.aio.ServicerContext) -> pb.RerankingResponse:
        return await self._gateway.reranking(request, context, self._provider)

    async def VerifyCredential(
        self, request: pb.VerifyCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyCredentialResponse:
        return await self._gateway.verify_credential(request, context, self._provider)

    async def GetModeration(
        self, request: pb.GetModerationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModerationResponse:
        return await self._gateway.get_moderation(request, context, self._provider)

    async def GetVersion(
        self, request: pb.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetVersionResponse:
        return await self._gateway.get_version(context)

    async def GetRoutes(self, request: pb.GetRoutesRequest, context: grpc.aio.ServicerContext) -> pb.GetRoutesResponse:
        return await get_routes(self._gateway, context)


def _method_handlers(servicer: ProviderService | SessionServicer, service: str) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers for the RPCs `service` declares in the .proto, bound to `servicer`.

    StreamChat passes raw bytes both ways: the engine decodes each request itself (so one undecodable message is
    that request's error, not the stream's end) and encodes its frames itself (``integration_api.frames``).
    Every other RPC deserializes its request and serializes its response message as usual.
    """
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        request_class = getattr(pb, method.input_type.name)
        behaviour = getattr(servicer, method.name)
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                behaviour, request_deserializer=None, response_serializer=None
            )
        else:
            response_class = getattr(pb, method.output_type.name)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString,
            )
    return handlers


def service_handlers(gateway: Gateway) -> ServiceHandlers:
    """Every service of the protocol: full name -> (its descriptor, method name -> handler), bound to `gateway`.

    The one table both front doors serve: `add_services` registers it on the gRPC server, and the gRPC-JSON bridge
    (``integration_api.http.bridge``) calls the very same handlers.
    """
    bindings: list[tuple[str, ProviderService | SessionServicer]] = [
        (service, ProviderService(gateway, provider)) for service, provider in PROVIDER_SERVICES.items()
    ]
    bindings.append((UNIFIED_SERVICE, ProviderService(gateway, None)))
    bindings.append((SESSION_SERVICE, SessionServicer(gateway)))
    table: ServiceHandlers = {}
    for service, servicer in bindings:
        descriptor = pb.DESCRIPTOR.services_by_name[service]
        table[descriptor.full_name] = (descriptor, _method_handlers(servicer, service))
    return table


def add_services(gateway: Gateway, server: grpc.aio.Server, handlers: ServiceHandlers | None = None) -> list[str]:
    """Register every service (`handlers`, by default `service_handlers(gateway)`) on `server`; returns their full
    names (for reflection and health)."""
    table = service_handlers(gateway) if handlers is None else handlers
    for full_name, (_descriptor, methods) in table.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(full_name, methods),))
        server.add_registered_method_handlers(full_name, methods)
    return list(table)
