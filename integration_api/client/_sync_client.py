"""`Client`: the synchronous twin of `AsyncClient`, with the same arguments and methods.

It is simple on purpose: a private event loop runs on a background daemon thread (``_loop.LoopThread``) and an
`AsyncClient` lives on it; every method submits the async method to that loop and blocks until it is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from integration_api.client._async_client import DEFAULT_TARGET, AsyncClient
from integration_api.client._config import MAX_MESSAGE_BYTES
from integration_api.client._credentials import Credential
from integration_api.client._loop import LoopThread
from integration_api.client._requests import Parameters
from integration_api.client._sessions import ServerStats, SessionInfo
from integration_api.client._sync_stream import ChatStream
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


class Client:
    """A connection to an integration-api gateway, for synchronous code.

    Same arguments as `AsyncClient`. It runs an asyncio event loop on a private background thread and drives an
    `AsyncClient` on it, so each method blocks the calling thread until the answer arrives; it may be used from
    several threads at once. Use it as ``with Client(...) as client:`` or call `close()`.
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
        self._async = self._create_async_client(
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
        self._loop = LoopThread()

    def _create_async_client(self, target: str, **options: Any) -> AsyncClient:
        return AsyncClient(target, **options)

    @property
    def target(self) -> str:
        return self._async.target

    @property
    def is_closed(self) -> bool:
        return self._async.is_closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every stream, the connection and the background loop. Idempotent."""
        if not self._async.is_closed:
            self._loop.run(self._async.aclose())
        self._loop.close()

    def check_connection(self) -> None:
        """Ask the gateway's health service; raises `APIConnectionError` / `ServiceUnavailableError` unless SERVING."""
        self._loop.run(self._async.check_connection())

    def get_version(self, *, check: bool = True) -> VersionInfo:
        """The gateway's version and protocol revision; raises `IncompatibleServerError` on a mismatch."""
        return self._loop.run(self._async.get_version(check=check))

    def stream(
        self, provider: str | None = None, *, credential: Credential | None = None, model: str | None = None
    ) -> ChatStream:
        """A persistent StreamChat stream for many concurrent requests: ``with client.stream(provider) as s:``."""
        return ChatStream(self._loop, self._async.stream(provider, credential=credential, model=model))

    def chat(
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
        """One complete chat response (the unary Chat RPC)."""
        return self._loop.run(
            self._async.chat(
                messages,
                provider=provider,
                model=model,
                credential=credential,
                tools=tools,
                parameters=parameters,
                request_id=request_id,
            )
        )

    def embed(
        self,
        inputs: str | Sequence[str],
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        parameters: Parameters | None = None,
    ) -> EmbeddingResult:
        """One embedding vector per input text, in input order."""
        return self._loop.run(
            self._async.embed(inputs, provider=provider, model=model, credential=credential, parameters=parameters)
        )

    def rerank(
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
        return self._loop.run(
            self._async.rerank(
                query,
                documents,
                provider=provider,
                model=model,
                credential=credential,
                parameters=parameters,
            )
        )

    def verify_credential(self, credential: Credential, *, provider: str | None = None) -> CredentialCheck:
        """Whether the provider accepts `credential`; a rejected credential is a result (`valid=False`)."""
        return self._loop.run(self._async.verify_credential(credential, provider=provider))

    def moderate(
        self,
        content: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        credential: Credential | None = None,
        parameters: Parameters | None = None,
    ) -> ModerationResult:
        """Moderation scores of `content` by category."""
        return self._loop.run(
            self._async.moderate(content, provider=provider, model=model, credential=credential, parameters=parameters)
        )

    def create_session(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        system: str | None = None,
        parameters: Parameters | None = None,
    ) -> SessionInfo:
        """A new conversation kept by the gateway; chat on it with ``stream.chat([new message], session_id=id)``."""
        return self._loop.run(self._async.create_session(provider, model, system=system, parameters=parameters))

    def get_session(self, session_id: str, *, include_messages: bool = False) -> SessionInfo:
        """One of this project's sessions (with its history when `include_messages`); `NotFoundError` if none."""
        return self._loop.run(self._async.get_session(session_id, include_messages=include_messages))

    def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        """This project's live sessions, most recently used first."""
        return self._loop.run(self._async.list_sessions(limit=limit))

    def delete_session(self, session_id: str) -> None:
        """End a session and forget its history; `NotFoundError` when there is no such session of this project."""
        self._loop.run(self._async.delete_session(session_id))

    def server_stats(self) -> ServerStats:
        """The gateway's counters: requests, streams, sessions, latencies, overall and per provider."""
        return self._loop.run(self._async.server_stats())
