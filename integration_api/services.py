"""The gRPC services: each is a thin binding of the `Gateway` to one provider name.

`ProviderService` implements every RPC once; it is registered under each per-provider service of the
protocol (which exposes only the RPCs that service declares) and under `UnifiedProviderService` (provider
chosen per request by `providerName`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from integration_api.gateway import Gateway
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc

# Per-provider services of the protocol and the provider each one is bound to.
PROVIDER_SERVICES: dict[str, tuple[str, Callable[[Any, grpc.aio.Server], None]]] = {
    "OpenAiService": ("openai", pb_grpc.add_OpenAiServiceServicer_to_server),
    "AzureService": ("azure", pb_grpc.add_AzureServiceServicer_to_server),
    "GeminiService": ("gemini", pb_grpc.add_GeminiServiceServicer_to_server),
    "VertexAiService": ("vertexai", pb_grpc.add_VertexAiServiceServicer_to_server),
    "CohereService": ("cohere", pb_grpc.add_CohereServiceServicer_to_server),
    "AnthropicService": ("anthropic", pb_grpc.add_AnthropicServiceServicer_to_server),
    "MistralService": ("mistral", pb_grpc.add_MistralServiceServicer_to_server),
    "ReplicateService": ("replicate", pb_grpc.add_ReplicateServiceServicer_to_server),
}
UNIFIED_SERVICE = "UnifiedProviderService"


class ProviderService:
    """Every RPC of the protocol, bound to `provider` (None: the request's `providerName` decides)."""

    def __init__(self, gateway: Gateway, provider: str | None) -> None:
        self._gateway = gateway
        self._provider = provider

    async def StreamChat(
        self, request_iterator: AsyncIterator[pb.ChatRequest], context: grpc.aio.ServicerContext
    ) -> None:
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


def add_services(gateway: Gateway, server: grpc.aio.Server) -> list[str]:
    """Register every service on `server`; returns their full names (for reflection and health)."""
    names = []
    for service, (provider, add) in PROVIDER_SERVICES.items():
        add(ProviderService(gateway, provider), server)
        names.append(f"integration_api.{service}")
    pb_grpc.add_UnifiedProviderServiceServicer_to_server(ProviderService(gateway, None), server)  # type: ignore[arg-type]
    names.append(f"integration_api.{UNIFIED_SERVICE}")
    return names
