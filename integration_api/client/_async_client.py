"""`AsyncClient`: the asyncio client of the integration-api gateway.

It owns one connection (a gRPC channel, opened lazily inside the running event loop) and hands out multiplexed
chat streams (`stream()`); unary calls (`chat`, `embed`, `rerank`, `verify_credential`, `moderate`, and the
SessionService's `create_session`, `get_session`, `list_sessions`, `delete_session`, `server_stats`) go over the
same channel. No method takes or returns a generated protobuf class.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Sequence
from types import TracebackType

from google.protobuf.message import Message

from integration_api.client import _requests as requests
from integration_api.client import _results as results
from integration_api.client import _sessions as sessions
from integration_api.client._config import MAX_MESSAGE_BYTES, ConnectionConfig
from integration_api.client._credentials import Credential
from integration_api.client._errors import StreamClosedError, UnimplementedError
from integration_api.client._requests import Parameters, ensure_fits
from integration_api.client._sessions import ServerStats, SessionInfo
from integration_api.client._stream import AsyncChatStream
from integration_api.client._transport import AsyncTransport, GrpcTransport, ResponseT
from integration_api.client._types import (
    ChatResult,
    CredentialCheck,
    EmbeddingResult,
    MessageParam,
    ModerationResult,
    RerankResult,
    ToolParam,
    VersionInfo,
)
from integration_api.client._version import check_compatible, predates_versioning
from integration_api.proto import integration_api_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"


class AsyncClient:
    """A connection to an integration-api gateway, for asyncio code.

    ``AsyncClient(target, api_key=...)`` (a project API key) or ``service_token=...`` (an internal service JWT);
    `tls` turns TLS on (implied by `root_certificates`: PEM bytes, PEM text or a path; None uses the system's
    roots); `keepalive` is the ping interval in seconds on idle connections (None: no pings); `timeout` is the
    deadline of unary calls in seconds (None: no deadline); `reconnect_attempts` bounds how often a broken stream
    reconnects in a row; `max_message_bytes` is the largest request sent (larger ones raise `RequestTooLargeError`
    unsent) and response received: keep it equal to the gateway's ``INTEGRATION_API_MAX_MESSAGE_BYTES`` (16 MiB by
    default). Use it as ``async with AsyncClient(...) as client:`` or call `aclose()`.

    ``INTEGRATION_API_ENABLED=false`` in the environment makes every call fail with `ClientDisabledError`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        service_token: str | None = None,
        tls: bool | None = None,
        root_certificates: bytes | str | os.PathLike[str] | None = None,
        keepalive: float | None = 30.0,
        timeout: float | None = 600.0,
        reconnect_attempts: int = 5,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._config = ConnectionConfig.build(
            target,
            api_key=api_key,
            service_token=service_token,
            tls=tls,
            root_certificates=root_certificates,
            keepalive=keepalive,
            timeout=timeout,
            reconnect_attempts=reconnect_attempts,
            max_message_bytes=max_message_bytes,
        )
        self._transport = self._create_transport(self._config)
        self._streams: weakref.WeakSet[AsyncChatStream] = weakref.WeakSet()
        self._closed = False

    def _create_transport(self, config: ConnectionConfig) -> AsyncTransport:
        return GrpcTransport(config)

    @property
    def target(self) -> str:
        return self._config.target

    @property
    def is_closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r} tls={self._config.tls}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every stream of this client and its connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            await stream.aclose()
        await self._transport.aclose()

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise StreamClosedError(f"this {type(self).__name__} is closed")

    # --- connection ---------------------------------------------------------------------------------------------

    async def check_connection(self) -> None:
        """Ask the gateway's health service; raises `APIConnectionError` / `ServiceUnavailableError` unless SERVING."""
        self._raise_if_closed()
        await self._transport.check_health(self._config.timeout)

    async def get_version(self, *, check: bool = True) -> VersionInfo:
        """The gateway's version, protocol revision and providers (GetVersion).

        With `check` (the default), raises `IncompatibleServerError` when the gateway and this client cannot
        work together; the message names both protocol revisions.
        """
        self._raise_if_closed()
        try:
            response = await self._transport.unary(
                "GetVersion", pb.GetVersionRequest(), pb.GetVersionResponse, deadline=self._config.timeout
            )
        except UnimplementedError as exc:
            raise predates_versioning(self.target) from exc
        info = results.version_info(response)
        if check:
            check_compatible(info, self.target)
        return info

    # --- streaming ----------------------------------------------------------------------------------------------

    def stream(
        self, provider: str | None = None, *, credential: Credential | None = None, model: str | None = None
    ) -> AsyncChatStream:
        """A persistent StreamChat stream for many concurrent requests: ``async with client.stream(p) as s:``.

        `provider` is the provider name (None: the gateway's default); `credential` and `model` are the
        defaults of every request on the stream.
        """
        self._raise_if_closed()
        stream = AsyncChatStream(
            self._transport,
            provider,
            credential=credential,
            model=model,
            reconnect_attempts=self._config.reconnect_attempts,
            max_message_bytes=self._config.max_message_bytes,
        )
        self._streams.add(stream)
        return stream

    # --- unary calls --------------------------------------------------------------------------------------------

    async def _unary(self, method: str, request: Message, response_type: type[ResponseT]) -> ResponseT:
        ensure_fits(request, self._config.max_message_bytes)  # gRPC would fail it as RESOURCE_EXHAUSTED ("retryable")
        return await self._transport.unary(method, request, response_type, deadline=self._config.timeout)

    async def chat(
        self,
        messages: Iterable[MessageParam],
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        tools: Iterable[ToolParam] | None = None,
        parameters: Parameters | None = None,
        request_id: str | None = None,
    ) -> ChatResult:
        """One complete chat response (the unary Chat RPC); use `stream()` to receive it as it is generated."""
        self._raise_if_closed()
        request = requests.chat_request(
            messages,
            request_id=request_id or requests.new_request_id(),
            provider=provider,
            model=model,
            credential=credential,
            tools=tools,
            parameters=parameters,
        )
        response = await self._unary("Chat", request, pb.ChatResponse)
        return results.chat_result(response)

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        parameters: Parameters | None = None,
    ) -> EmbeddingResult:
        """One embedding vector per input text, in input order."""
        self._raise_if_closed()
        request = requests.embedding_request(
            inputs, provider=provider, model=model, credential=credential, parameters=parameters
        )
        response = await self._unary("Embedding", request, pb.EmbeddingResponse)
        return results.embedding_result(response)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        parameters: Parameters | None = None,
    ) -> RerankResult:
        """The documents ordered by relevance to `query`, most relevant first."""
        self._raise_if_closed()
        request = requests.rerank_request(
            query, documents, provider=provider, model=model, credential=credential, parameters=parameters
        )
        response = await self._unary("Reranking", request, pb.RerankingResponse)
        return results.rerank_result(response)

    async def verify_credential(self, credential: Credential, *, provider: str | None = None) -> CredentialCheck:
        """Whether the provider accepts `credential`; a rejected credential is a result (`valid=False`)."""
        self._raise_if_closed()
        request = requests.verify_request(credential, provider=provider)
        response = await self._unary("VerifyCredential", request, pb.VerifyCredentialResponse)
        return results.credential_check(response)

    async def moderate(
        self,
        content: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        parameters: Parameters | None = None,
    ) -> ModerationResult:
        """Moderation scores of `content` by category."""
        self._raise_if_closed()
        request = requests.moderation_request(
            content, provider=provider, model=model, credential=credential, parameters=parameters
        )
        response = await self._unary("GetModeration", request, pb.GetModerationResponse)
        return results.moderation_result(response)

    # --- conversations kept by the gateway (SessionService) ---------------------------------------------------

    async def create_session(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        system: str | None = None,
        parameters: Parameters | None = None,
    ) -> SessionInfo:
        """A new conversation kept by the gateway; chat on it with ``stream.chat([new message], session_id=id)``.

        `provider` (None: the gateway's default) is the session's for good: chat on it on a stream of that
        provider. `system` is its system prompt; `model` and `parameters` are the defaults of its requests (a
        request's own win).
        """
        self._raise_if_closed()
        request = sessions.create_session_request(provider, model, system, parameters)
        response = await self._unary("CreateSession", request, pb.CreateSessionResponse)
        return sessions.session_info(response.session)

    async def get_session(self, session_id: str, *, include_messages: bool = False) -> SessionInfo:
        """One of this project's sessions (with its history when `include_messages`); `NotFoundError` when it
        does not exist, expired, or belongs to another project."""
        self._raise_if_closed()
        request = pb.GetSessionInfoRequest(sessionId=session_id, includeMessages=include_messages)
        response = await self._unary("GetSessionInfo", request, pb.GetSessionInfoResponse)
        return sessions.session_info(response.session)

    async def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        """This project's live sessions, most recently used first (at most `limit`; None: the gateway's maximum)."""
        self._raise_if_closed()
        response = await self._unary("ListSessions", pb.ListSessionsRequest(limit=limit or 0), pb.ListSessionsResponse)
        return [sessions.session_info(info) for info in response.sessions]

    async def delete_session(self, session_id: str) -> None:
        """End a session and forget its history; `NotFoundError` when there is no such session of this project."""
        self._raise_if_closed()
        await self._unary("DeleteSession", pb.DeleteSessionRequest(sessionId=session_id), pb.DeleteSessionResponse)

    async def server_stats(self) -> ServerStats:
        """The gateway's counters: requests, streams, sessions, latencies, overall and per provider."""
        self._raise_if_closed()
        response = await self._unary("GetServerStats", pb.GetServerStatsRequest(), pb.GetServerStatsResponse)
        return sessions.server_stats(response)
