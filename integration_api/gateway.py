"""The gateway: what every RPC does, independent of which service it was called on.

Services (``integration_api.services``) are thin bindings of this object to a provider name. Each RPC
authenticates first, builds the provider caller for the request's own credential, and translates
`GatewayError` into the protocol's answer: error frames on streams, gRPC statuses (with google.rpc details)
on unary RPCs, never UNKNOWN.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import NoReturn, Protocol, TypeVar

import grpc

from integration_api import __version__
from integration_api.engine import StreamSession
from integration_api.errors import GatewayError, Internal, InvalidArgument, Unavailable, Unimplemented
from integration_api.frames import ResponseAccumulator, final_frame
from integration_api.lifecycle import Lifecycle
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import credential_value, decode_parameters, parse_chat_request
from integration_api.settings import Settings
from integration_api.status import rich_status
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.registry import ProviderRegistry
from providers.resilience import ResilientProvider
from providers.types import ChatFinished, EmbeddingCall, ModerationCall, RerankCall, TextDelta, ToolCallDelta

logger = logging.getLogger(__name__)

PROTOCOL_REVISION = 2
MINIMUM_CLIENT_REVISION = 1
T = TypeVar("T")

Metadata = Sequence[tuple[str, str | bytes]]


class Authenticator(Protocol):
    @property
    def disabled(self) -> bool: ...

    async def authenticate(self, metadata: Metadata | None) -> object: ...


class Gateway:
    """Every RPC of the protocol, served from one registry, one authenticator and one settings object."""

    def __init__(
        self,
        settings: Settings,
        registry: ProviderRegistry,
        clients: ClientCache,
        authenticator: Authenticator,
        lifecycle: Lifecycle,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.clients = clients
        self.authenticator = authenticator
        self.lifecycle = lifecycle

    # --- shared steps ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def provider(self, provider_name: str, credential: pb.Credential, rpc: str) -> Iterator[Provider]:
        """The caller of one request, built from its own credential; its SDK client stays open until the end."""
        spec = self.registry.get(provider_name)
        if rpc not in spec.rpcs:
            raise Unimplemented(f"provider {provider_name!r} does not support {rpc}")
        lease = self.clients.lease()
        try:
            env = ProviderEnv(self.settings, lease)
            yield ResilientProvider(spec.factory(credential_value(credential), env), self.settings)
        finally:
            lease.release()

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> None:
        try:
            await self.authenticator.authenticate(context.invocation_metadata())
        except GatewayError as error:
            await _abort(context, error)

    def _provider_name(self, bound: str | None, requested: str) -> str:
        return bound if bound is not None else (requested or self.settings.default_provider)

    # --- StreamChat --------------------------------------------------------------------------------------------

    async def stream_chat_bidirectional(
        self,
        requests: AsyncIterator[pb.ChatRequest],
        context: grpc.aio.ServicerContext,
        provider_name: str | None,
    ) -> None:
        """Serve one StreamChat RPC: authenticate once, then run every request read from it."""
        await self._authenticate(context)
        if self.lifecycle.draining:
            await _abort(context, Unavailable("the server is shutting down; open the stream on another instance"))
        session = StreamSession(self.provider, self.settings, self.lifecycle, provider_name)
        await session.serve(requests, context.write)

    # --- unary RPCs --------------------------------------------------------------------------------------------

    async def _unary(self, context: grpc.aio.ServicerContext, operation: Callable[[], Awaitable[T]]) -> T:
        await self._authenticate(context)
        try:
            return await operation()
        except GatewayError as error:
            await _abort(context, error)
        except Exception as exc:
            logger.exception("unary RPC failed unexpectedly")
            await _abort(context, Internal(f"unexpected {type(exc).__name__}"))

    async def chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.ChatResponse:
        async def complete() -> pb.ChatResponse:
            if request.action != pb.REQUEST_ACTION_START:
                raise InvalidArgument("Chat is unary: only StreamChat accepts a CANCEL action")
            call = parse_chat_request(request)
            accumulated = ResponseAccumulator()
            name = self._provider_name(bound, request.providerName)
            with self.provider(name, request.credential, "Chat") as provider:
                async for event in provider.stream_chat(call):
                    if isinstance(event, TextDelta):
                        accumulated.add_text(event.text)
                    elif isinstance(event, ToolCallDelta):
                        accumulated.add_tool_call(event)
                    elif isinstance(event, ChatFinished):
                        return final_frame(call.request_id, accumulated, event)
            raise Internal(f"provider {name!r} ended without finishing the response")

        return await self._unary(context, complete)

    async def embedding(
        self, request: pb.EmbeddingRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.EmbeddingResponse:
        async def embed() -> pb.EmbeddingResponse:
            name = self._provider_name(bound, request.providerName)
            call = EmbeddingCall(dict(request.content), decode_parameters(request.modelParameters))
            with self.provider(name, request.credential, "Embedding") as provider:
                result = await provider.embed(call)
            data = [pb.Embedding(index=v.index, embedding=v.values) for v in result.vectors]
            metrics = [pb.Metric(name="INPUT_TOKEN", value=str(result.usage.input_tokens))]
            return pb.EmbeddingResponse(code=200, success=True, data=data, metrics=metrics)

        return await self._unary(context, embed)

    async def reranking(
        self, request: pb.RerankingRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.RerankingResponse:
        async def rerank() -> pb.RerankingResponse:
            name = self._provider_name(bound, request.providerName)
            call = RerankCall(request.query, dict(request.content), decode_parameters(request.modelParameters))
            with self.provider(name, request.credential, "Reranking") as provider:
                result = await provider.rerank(call)
            data = [
                pb.Reranking(index=s.index, content=s.content, relevanceScore=s.relevance_score) for s in result.scores
            ]
            return pb.RerankingResponse(code=200, success=True, data=data)

        return await self._unary(context, rerank)

    async def verify_credential(
        self, request: pb.VerifyCredentialRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.VerifyCredentialResponse:
        """A rejected credential is an answer (success=false), not an RPC failure."""

        async def verify() -> pb.VerifyCredentialResponse:
            name = self._provider_name(bound, request.providerName)
            try:
                with self.provider(name, request.credential, "VerifyCredential") as provider:
                    description = await provider.verify_credential()
            except (Unimplemented, Internal):
                raise
            except GatewayError as error:
                return pb.VerifyCredentialResponse(code=error.http_status, success=False, errorMessage=error.message)
            return pb.VerifyCredentialResponse(code=200, success=True, response=description)

        return await self._unary(context, verify)

    async def get_moderation(
        self, request: pb.GetModerationRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.GetModerationResponse:
        async def moderate() -> pb.GetModerationResponse:
            name = self._provider_name(bound, request.providerName)
            call = ModerationCall(request.content, request.model, decode_parameters(request.modelParameters))
            with self.provider(name, request.credential, "GetModeration") as provider:
                result = await provider.moderate(call)
            data = [pb.Moderation(name=key, value=value) for key, value in sorted(result.scores.items())]
            return pb.GetModerationResponse(code=200, success=True, data=data)

        return await self._unary(context, moderate)

    async def get_version(self, context: grpc.aio.ServicerContext) -> pb.GetVersionResponse:
        async def version() -> pb.GetVersionResponse:
            providers = [pb.ProviderInfo(name=spec.name, rpcs=sorted(spec.rpcs)) for spec in self.registry]
            return pb.GetVersionResponse(
                serverVersion=__version__,
                protocolRevision=PROTOCOL_REVISION,
                minimumClientRevision=MINIMUM_CLIENT_REVISION,
                providers=providers,
            )

        return await self._unary(context, version)


async def _abort(context: grpc.aio.ServicerContext, error: GatewayError) -> NoReturn:
    await context.abort_with_status(rich_status(error))
    raise AssertionError("unreachable: abort_with_status raises")
