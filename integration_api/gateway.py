"""The gateway: what every RPC does, independent of which service it was called on.

Services (``integration_api.services``) are thin bindings of this object to a provider name. Each RPC
authenticates first (a typed `Principal`), makes the request's `RequestContext`, builds the provider caller for
the request's own credential inside the request pipeline (``integration_api.pipeline``), and translates
`GatewayError` into the protocol's answer: error frames on streams, gRPC statuses (with google.rpc details)
on unary RPCs, never UNKNOWN. Every request is recorded once in the access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import NoReturn, Protocol, TypeVar

import grpc
from google.protobuf import any_pb2

from auth.client_certs import ClientCertificate
from auth.principal import Principal
from integration_api import __version__, access_log
from integration_api.context import RequestContext, StreamContext, TraceContext
from integration_api.credentials import StoredCredentials
from integration_api.engine import NoFrames, QueuedRequests, StreamSession, complete_chat
from integration_api.errors import GatewayError, Internal, InvalidArgument, Unauthenticated, Unavailable, Unimplemented
from integration_api.frames import ResponseAccumulator
from integration_api.lifecycle import Lifecycle
from integration_api.pipeline import Pipeline, build_pipeline
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import credential_value, decode_parameters, parse_chat_request
from integration_api.routing.install import install_routes
from integration_api.sessions.state import ServerState
from integration_api.settings import Settings
from integration_api.status import rich_status
from integration_api.stream_limits import OpenStreams
from integration_api.usage.layer import attempt_recorder
from providers.base import CredentialValue, Provider, ProviderEnv
from providers.clients import ClientCache
from providers.registry import ProviderRegistry
from providers.types import EmbeddingCall, ModerationCall, RerankCall

logger = logging.getLogger(__name__)

PROTOCOL_REVISION = 3
MINIMUM_CLIENT_REVISION = 1
# How a refused stream reads what its client already sent before the status goes out (see `_refuse_stream`).
REFUSAL_DRAIN_IDLE_S = 0.02
REFUSAL_DRAIN_MAX_S = 1.0
REFUSAL_DRAIN_MAX_MESSAGES = 1000
T = TypeVar("T")

Metadata = Sequence[tuple[str, str | bytes]]


class Authenticator(Protocol):
    @property
    def disabled(self) -> bool: ...

    async def authenticate(
        self, metadata: Metadata | None, certificate: ClientCertificate | None = None
    ) -> Principal: ...


class Gateway:
    """Every RPC of the protocol, served from one registry, one authenticator and one settings object."""

    def __init__(
        self,
        settings: Settings,
        registry: ProviderRegistry,
        clients: ClientCache,
        authenticator: Authenticator,
        lifecycle: Lifecycle,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.clients = clients
        self.authenticator = authenticator
        self.lifecycle = lifecycle
        self.pipeline = pipeline or build_pipeline(settings)
        self.state = self.pipeline.state or ServerState(settings)  # stats and sessions (SessionService)
        self.queued = QueuedRequests(settings.max_queued_per_principal)
        self.credentials = StoredCredentials.from_settings(settings)  # what `credential_ref` / Credential.id name
        self.routes = install_routes(settings, registry, self.credentials)  # "route:NAME" providers (routing)
        self.routes.record_attempt = attempt_recorder(self.state.usage)  # every routed attempt in the usage log
        self.open_streams = OpenStreams(settings.max_streams_per_principal)

    # --- shared steps ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def provider(self, context: RequestContext, credential: CredentialValue) -> Iterator[Provider]:
        """The caller of one request inside the pipeline, built from its own credential; its SDK client stays
        open until the end."""
        spec = self.registry.get(context.provider)
        if context.rpc not in spec.rpcs:
            raise Unimplemented(f"provider {context.provider!r} does not support {context.rpc}")
        credential = self.credentials.resolve(context, credential)  # a stored credential's value, if referenced
        lease = self.clients.lease()
        try:
            env = ProviderEnv(self.settings, lease, context)
            yield self.pipeline.wrap(spec.factory(credential, env), context)
        finally:
            lease.release()

    async def authenticate(
        self,
        metadata: Metadata | None,
        peer: str,
        deadline: float | None,
        certificate: ClientCertificate | None = None,
    ) -> StreamContext:
        """The context of a new call from its metadata (and mTLS client certificate); raises Unauthenticated (logged
        with the peer)."""
        try:
            principal = await self.authenticator.authenticate(metadata, certificate)
        except Unauthenticated as error:
            logger.warning("refused a call from %s: %s", peer, error.message)
            raise
        return StreamContext(principal, peer, trace=TraceContext.from_metadata(metadata), deadline=deadline)

    async def _open_call(self, context: grpc.aio.ServicerContext) -> StreamContext:
        try:
            return await self.authenticate(
                context.invocation_metadata(), context.peer(), _deadline(context), _certificate(context)
            )
        except GatewayError as error:
            await _abort(context, error)

    def _provider_name(self, bound: str | None, requested: str) -> str:
        return bound if bound is not None else (requested or self.settings.default_provider)

    # --- StreamChat --------------------------------------------------------------------------------------------

    async def stream_chat_bidirectional(
        self,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
        provider_name: str | None,
    ) -> None:
        """Serve one StreamChat RPC: authenticate once, then run every (raw) request read from it."""
        metadata, certificate = context.invocation_metadata(), _certificate(context)
        try:
            stream = await self.authenticate(metadata, context.peer(), _deadline(context), certificate)
            if self.lifecycle.draining:
                raise Unavailable("the server is shutting down; open the stream on another instance")
            hold = self.open_streams.open(stream.principal)  # RESOURCE_EXHAUSTED over max_streams_per_principal
        except GatewayError as error:
            await _refuse_stream(context, requests, error)

        async def reauthenticate() -> Principal:
            return await self.authenticator.authenticate(metadata, certificate)

        session = StreamSession(
            self.provider,
            self.settings,
            self.lifecycle,
            provider_name,
            stream,
            reauthenticate=reauthenticate,
            queued=self.queued,
        )
        try:
            with hold, self.state.stats.stream():
                await session.serve(requests, context.write)
        except (Unauthenticated, Unavailable) as error:  # credential no longer valid; idle (stream_idle_timeout_s)
            logger.warning("ended a stream from %s: %s", stream.peer, error.message)
            await _refuse_stream(context, requests, error)

    # --- unary RPCs --------------------------------------------------------------------------------------------

    async def _unary(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        provider: str,
        operation: Callable[[RequestContext], Awaitable[T]],
        *,
        request_id: str = "",
        model: str = "",
        session_id: str = "",
    ) -> T:
        stream = await self._open_call(context)
        request = RequestContext(stream, rpc, provider, request_id, model, session_id=session_id)
        try:
            result = await operation(request)
        except GatewayError as error:
            access_log.record(request, error.status, error.http_status)
            await _abort(context, error)
        except Exception as exc:
            logger.exception("unary %s from %s failed unexpectedly", rpc, stream.peer)
            internal = Internal(f"unexpected {type(exc).__name__}")
            access_log.record(request, internal.status, internal.http_status)
            await _abort(context, internal)
        access_log.record(request, "OK", 200)
        return result

    async def chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.ChatResponse:
        """Unary Chat: the same chat loop as StreamChat (`complete_chat`), answering only its final frame."""
        name = self._provider_name(bound, request.providerName)
        if request.action != pb.REQUEST_ACTION_START:
            invalid = InvalidArgument("Chat is unary: only StreamChat accepts a CANCEL action")
            return await self._unary(context, "Chat", name, _fail(invalid), request_id=request.requestId)
        try:
            call = parse_chat_request(request)
        except InvalidArgument as error:
            return await self._unary(context, "Chat", name, _fail(error), request_id=request.requestId)

        async def complete(request_context: RequestContext) -> pb.ChatResponse:
            accumulated = ResponseAccumulator(request_context.started_ns, limit=self.settings.max_message_bytes)
            with self.provider(request_context, credential_value(request.credential)) as provider:
                return await complete_chat(provider, call, accumulated, NoFrames())

        return await self._unary(
            context, "Chat", name, complete, request_id=call.request_id, model=call.model, session_id=request.sessionId
        )

    async def embedding(
        self, request: pb.EmbeddingRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.EmbeddingResponse:
        async def embed(request_context: RequestContext) -> pb.EmbeddingResponse:
            call = EmbeddingCall(dict(request.content), decode_parameters(request.modelParameters))
            with self.provider(request_context, credential_value(request.credential)) as provider:
                result = await provider.embed(call)
            data = [pb.Embedding(index=v.index, embedding=v.values) for v in result.vectors]
            metrics = [pb.Metric(name="INPUT_TOKEN", value=str(result.usage.input_tokens))]
            return pb.EmbeddingResponse(code=200, success=True, data=data, metrics=metrics)

        name = self._provider_name(bound, request.providerName)
        return await self._unary(context, "Embedding", name, embed, model=_model_of(request.modelParameters))

    async def reranking(
        self, request: pb.RerankingRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.RerankingResponse:
        async def rerank(request_context: RequestContext) -> pb.RerankingResponse:
            call = RerankCall(request.query, dict(request.content), decode_parameters(request.modelParameters))
            with self.provider(request_context, credential_value(request.credential)) as provider:
                result = await provider.rerank(call)
            data = [
                pb.Reranking(index=s.index, content=s.content, relevanceScore=s.relevance_score) for s in result.scores
            ]
            return pb.RerankingResponse(code=200, success=True, data=data)

        name = self._provider_name(bound, request.providerName)
        return await self._unary(context, "Reranking", name, rerank, model=_model_of(request.modelParameters))

    async def verify_credential(
        self, request: pb.VerifyCredentialRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.VerifyCredentialResponse:
        """A rejected credential is an answer (success=false), not an RPC failure."""

        async def verify(request_context: RequestContext) -> pb.VerifyCredentialResponse:
            try:
                with self.provider(request_context, credential_value(request.credential)) as provider:
                    description = await provider.verify_credential()
            except (Unimplemented, Internal):
                raise
            except GatewayError as error:
                return pb.VerifyCredentialResponse(code=error.http_status, success=False, errorMessage=error.message)
            return pb.VerifyCredentialResponse(code=200, success=True, response=description)

        name = self._provider_name(bound, request.providerName)
        return await self._unary(context, "VerifyCredential", name, verify)

    async def get_moderation(
        self, request: pb.GetModerationRequest, context: grpc.aio.ServicerContext, bound: str | None
    ) -> pb.GetModerationResponse:
        async def moderate(request_context: RequestContext) -> pb.GetModerationResponse:
            call = ModerationCall(request.content, request.model, decode_parameters(request.modelParameters))
            with self.provider(request_context, credential_value(request.credential)) as provider:
                result = await provider.moderate(call)
            data = [pb.Moderation(name=key, value=value) for key, value in sorted(result.scores.items())]
            return pb.GetModerationResponse(code=200, success=True, data=data)

        name = self._provider_name(bound, request.providerName)
        return await self._unary(context, "GetModeration", name, moderate, model=request.model)

    async def get_version(self, context: grpc.aio.ServicerContext) -> pb.GetVersionResponse:
        async def version(request_context: RequestContext) -> pb.GetVersionResponse:
            providers = [pb.ProviderInfo(name=spec.name, rpcs=sorted(spec.rpcs)) for spec in self.registry]
            return pb.GetVersionResponse(
                serverVersion=__version__,
                protocolRevision=PROTOCOL_REVISION,
                minimumClientRevision=MINIMUM_CLIENT_REVISION,
                providers=providers,
            )

        return await self._unary(context, "GetVersion", "", version)


def _certificate(context: grpc.aio.ServicerContext) -> ClientCertificate | None:
    """The client certificate the TLS handshake verified (mTLS), or None (plaintext, TLS without client auth)."""
    return ClientCertificate.from_auth_context(context.auth_context())


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's gRPC deadline as a time.monotonic() instant, or None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _fail(error: GatewayError) -> Callable[[RequestContext], Awaitable[pb.ChatResponse]]:
    """An operation that fails with `error` (a request refused before it reaches a provider)."""

    async def fail(request_context: RequestContext) -> pb.ChatResponse:
        raise error

    return fail


def _model_of(parameters: Mapping[str, any_pb2.Any]) -> str:
    """`model.name` of a unary request's parameters, for the access log, without decoding the others."""
    if "model.name" not in parameters:
        return ""
    try:
        value = decode_parameters({"model.name": parameters["model.name"]})["model.name"]
    except GatewayError:
        return ""
    return value if isinstance(value, str) else ""


async def _refuse_stream(
    context: grpc.aio.ServicerContext, requests: AsyncIterator[bytes], error: GatewayError
) -> NoReturn:
    """End a StreamChat RPC with `error`'s status, after reading what the client already sent.

    A status sent while the client's requests are still arriving unread reaches grpc clients as INTERNAL
    ("Internal error from Core": the stream is reset under them) instead of the status. So the requests already on
    their way are read and dropped first, until none arrives for a moment (bounded in time and count: a client that
    keeps sending only delays its own refusal).
    """
    pending = aiter(requests)
    try:
        async with asyncio.timeout(REFUSAL_DRAIN_MAX_S):
            for _ in range(REFUSAL_DRAIN_MAX_MESSAGES):
                async with asyncio.timeout(REFUSAL_DRAIN_IDLE_S):
                    await anext(pending)
    except (TimeoutError, StopAsyncIteration):
        pass
    await _abort(context, error)


async def _abort(context: grpc.aio.ServicerContext, error: GatewayError) -> NoReturn:
    await context.abort_with_status(rich_status(error))
    raise AssertionError("unreachable: abort_with_status raises")
