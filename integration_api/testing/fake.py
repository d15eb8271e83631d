"""`FakeClient` / `AsyncFakeClient`: the real clients over an in-memory gateway, for testing code that uses them.

They *are* a `Client` / `AsyncClient` (same methods, same typed results and exceptions, same multiplexed
streams, cancel included); only the transport is replaced by a `FakeGateway` that answers from a script and
records every call. Nothing touches the network, and the ``INTEGRATION_API_ENABLED`` kill switch does not apply.

    fake = AsyncFakeClient()
    fake.add_reply("Paris.")                       # the next chat answers this, word by word
    fake.add_error(RateLimitError("slow down"))    # the one after fails with this
    await my_code(fake)
    assert fake.calls[0].messages[-1].content == "What is the capital of France?"

Without a script (or a `handler`), chats echo the last user message, embeddings are deterministic vectors,
reranking scores word overlap, credentials are valid and moderation scores are 0.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from integration_api.client import (
    APIError,
    AsyncClient,
    Client,
    CredentialCheck,
    Embedding,
    EmbeddingResult,
    ModerationResult,
    RerankedDocument,
    RerankResult,
    ToolCall,
    Usage,
    UserMessage,
)
from integration_api.client._config import ConnectionConfig
from integration_api.client._fake_transport import (
    FAKE_TARGET,
    FakeReply,
    FakeTransport,
    Handler,
    Outcome,
    RecordedCall,
    words,
)
from integration_api.client._transport import AsyncTransport

__all__ = ["AsyncFakeClient", "FakeClient", "FakeGateway", "FakeReply", "RecordedCall"]


class FakeGateway:
    """The script and the record shared by fake clients: what to answer next, and every call made."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.calls: list[RecordedCall] = []
        self.cancelled: list[str] = []  # request ids the client cancelled on a stream
        self._script: deque[Outcome] = deque()

    def add_reply(
        self,
        text: str = "",
        *,
        tool_calls: Sequence[ToolCall] = (),
        finish_reason: str | None = None,
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next chat (streamed or unary) answers with this reply."""
        self._script.append(FakeReply(text, tuple(tool_calls), finish_reason, usage, delay))

    def add_error(self, error: APIError) -> None:
        """The next call (of any method) fails with `error`."""
        self._script.append(error)

    def add_result(self, result: EmbeddingResult | RerankResult | CredentialCheck | ModerationResult) -> None:
        """The next embed / rerank / verify_credential / moderate returns `result`."""
        self._script.append(result)

    def next_outcome(self, call: RecordedCall) -> Outcome:
        self.calls.append(call)
        if self._script:
            return self._script.popleft()
        if self.handler is not None and (outcome := self.handler(call)) is not None:
            return outcome
        return _default_outcome(call)


# --- the defaults ---------------------------------------------------------------------------------------------


def _default_outcome(call: RecordedCall) -> Outcome:
    if call.method == "embed":
        return EmbeddingResult(tuple(Embedding(i, _vector(text)) for i, text in enumerate(call.inputs)))
    if call.method == "rerank":
        query = {word.strip().lower() for word in words(call.query)}
        scored = [
            RerankedDocument(i, doc, len(query & {w.strip().lower() for w in words(doc)}) / max(len(query), 1))
            for i, doc in enumerate(call.inputs)
        ]
        return RerankResult(tuple(scored))
    if call.method == "verify_credential":
        return CredentialCheck(True, 200, "fake credential accepted")
    if call.method == "moderate":
        return ModerationResult({"flagged": 0.0})
    last_user = next((m.content for m in reversed(call.messages) if isinstance(m, UserMessage)), "")
    return FakeReply(last_user)


def _vector(text: str, dimensions: int = 8) -> tuple[float, ...]:
    return tuple((byte - 127.5) / 127.5 for byte in hashlib.sha256(text.encode()).digest()[:dimensions])


# --- the clients --------------------------------------------------------------------------------------------


class _Scripted:
    """The scripting surface of both fake clients, delegated to their `FakeGateway`."""

    gateway: FakeGateway

    @property
    def calls(self) -> list[RecordedCall]:
        return self.gateway.calls

    @property
    def cancelled(self) -> list[str]:
        return self.gateway.cancelled

    def add_reply(
        self,
        text: str = "",
        *,
        tool_calls: Sequence[ToolCall] = (),
        finish_reason: str | None = None,
        usage: Usage | None = None,
        delay: float = 0.0,
    ) -> None:
        self.gateway.add_reply(text, tool_calls=tool_calls, finish_reason=finish_reason, usage=usage, delay=delay)

    def add_error(self, error: APIError) -> None:
        self.gateway.add_error(error)

    def add_result(self, result: EmbeddingResult | RerankResult | CredentialCheck | ModerationResult) -> None:
        self.gateway.add_result(result)


class AsyncFakeClient(_Scripted, AsyncClient):
    """An `AsyncClient` answered by an in-memory `FakeGateway` (pass one to share it, or a `handler`)."""

    def __init__(self, gateway: FakeGateway | None = None, *, handler: Handler | None = None) -> None:
        self.gateway = gateway or FakeGateway(handler)
        super().__init__(FAKE_TARGET, reconnect_attempts=0)

    def _create_transport(self, config: ConnectionConfig) -> AsyncTransport:
        return FakeTransport(self.gateway)


class FakeClient(_Scripted, Client):
    """A `Client` answered by an in-memory `FakeGateway` (pass one to share it, or a `handler`)."""

    def __init__(self, gateway: FakeGateway | None = None, *, handler: Handler | None = None) -> None:
        self.gateway = gateway or FakeGateway(handler)
        super().__init__(FAKE_TARGET, reconnect_attempts=0)

    def _create_async_client(self, target: str, **options: Any) -> AsyncClient:
        return AsyncFakeClient(self.gateway)
