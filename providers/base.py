"""The one interface every provider implements, and how providers are described and built.

A `Provider` is a caller bound to one credential: the engine builds one per request with its
`ProviderSpec.factory(credential, env)`, so every request uses its own `Credential`. Providers speak only the
gateway's own types (``providers.types``) and raise only ``integration_api.errors.GatewayError``; vendor types
and exceptions stay inside each adapter.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from integration_api.errors import Unimplemented
from providers.clients import ClientSource
from providers.types import (
    ChatCall,
    ChatEvent,
    ChatFinished,
    EmbeddingCall,
    EmbeddingResult,
    JsonValue,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
    TextDelta,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from integration_api.context import RequestContext
    from integration_api.settings import Settings

# The RPC names of the protocol, as `ProviderSpec.rpcs` and GetVersion list them.
CHAT_RPCS = frozenset({"Chat", "StreamChat", "VerifyCredential"})
ALL_RPCS = CHAT_RPCS | {"Embedding", "Reranking", "GetModeration"}

T = TypeVar("T")
CredentialValue = Mapping[str, JsonValue]

# What `Provider.stream_chat` returns: an async generator, so that closing it (`aclose`) closes the upstream call.
ChatStream = AsyncGenerator[ChatEvent, None]


class Provider:
    """A provider caller for one credential. Override what the vendor supports; the rest is UNIMPLEMENTED."""

    name: str = "provider"

    def stream_chat(self, call: ChatCall) -> ChatStream:
        """Stream the reply: TextDelta/ToolCallDelta events as they arrive, then exactly one ChatFinished.

        Closing the generator early (cancellation) must close the upstream call.
        """
        raise Unimplemented(f"provider {self.name!r} does not support chat")

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        raise Unimplemented(f"provider {self.name!r} does not support embeddings")

    async def rerank(self, call: RerankCall) -> RerankResult:
        raise Unimplemented(f"provider {self.name!r} does not support reranking")

    async def verify_credential(self) -> str:
        """Make a cheap authenticated call; return a short description of what was verified."""
        raise Unimplemented(f"provider {self.name!r} does not support credential verification")

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        raise Unimplemented(f"provider {self.name!r} does not support moderation")


@dataclass(frozen=True, slots=True)
class ProviderEnv:
    """What every factory receives besides the credential: the settings and shared, reusable resources.

    `clients` is the server's `ClientCache`, or, for one request, a `ClientLease` on it (see `Gateway.provider`).
    `context` is the request's own context (None outside a request, e.g. in an adapter's unit test).
    `trusted_base_url` is set only by server code, never from a request: the one credential base URL an operator
    configured (a route's target, ``integration_api.routing``), which ``providers.endpoints`` honours without the
    allowlist.
    """

    settings: Settings
    clients: ClientSource
    context: RequestContext | None = None
    trusted_base_url: str | None = None


ProviderFactory = Callable[[CredentialValue, ProviderEnv], Provider]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A registered provider: its name, the RPCs it serves and the factory that builds its caller."""

    name: str
    factory: ProviderFactory
    rpcs: frozenset[str]
    description: str = ""


class ProviderLayer(Provider):
    """A provider wrapping another one: every call goes to `inner` unless the layer overrides it.

    Cross-cutting behaviour (retries, limits, accounting, metrics, routing) is a subclass that overrides the calls
    it cares about; ``integration_api.pipeline`` stacks layers around each request's adapter, outermost first.
    A layer is built per request, with that request's context.
    """

    def __init__(self, inner: Provider, context: RequestContext) -> None:
        self.inner = inner
        self.context = context
        self.name = inner.name

    def stream_chat(self, call: ChatCall) -> ChatStream:
        return self.inner.stream_chat(call)

    # Every unary call goes through `unary`: a layer that treats them alike overrides that one method.

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        return await self.unary(lambda: self.inner.embed(call), _embedding_usage)

    async def rerank(self, call: RerankCall) -> RerankResult:
        return await self.unary(lambda: self.inner.rerank(call))

    async def verify_credential(self) -> str:
        return await self.unary(self.inner.verify_credential)

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        return await self.unary(lambda: self.inner.moderate(call))

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        """Run one unary call (Embedding, Reranking, VerifyCredential, GetModeration) of the layer inside;
        `usage_of` reads the tokens of its result (None: the call reports none)."""
        return await operation()


def _embedding_usage(result: EmbeddingResult) -> Usage:
    return result.usage


class ChatOutcome:
    """How one chat stream went, gathered in one pass over its events for every observing layer around it."""

    __slots__ = (
        "characters",
        "chunks",
        "error",
        "finished",
        "first_chunk_ns",
        "first_ns",
        "last_chunk_ns",
        "texts",
        "usage",
    )

    def __init__(self, keep_text: bool) -> None:
        self.error: BaseException | None = None  # what ended it early (GeneratorExit: the consumer stopped reading)
        self.finished = False  # ChatFinished came and the stream then ran to its end
        self.usage: Usage | None = None  # ChatFinished's
        self.first_ns = 0  # perf_counter_ns of the first event
        self.first_chunk_ns = 0  # ... of the first and the last text or tool-call delta
        self.last_chunk_ns = 0
        self.chunks = 0  # text and tool-call deltas
        self.characters = 0  # of text, and of tool-call names and arguments
        self.texts: list[str] | None = [] if keep_text else None  # the reply's text, when an observer asked for it


class ObservingLayer(ProviderLayer):
    """A layer that only watches chat streams: `opened` before the call (it may refuse it by raising), `closed`
    with the `ChatOutcome` after, however the call ended.

    Observing layers next to each other share ONE pass over the events: the outermost of them runs the stream of
    the first non-observing provider inside and tells each of them, so each costs nothing per event (a layer that
    re-yields every event costs about half a microsecond per event). Unary calls go through each layer as usual.
    """

    keeps_text = False  # True: the outcome collects the reply's text for this layer

    async def opened(self, call: ChatCall) -> None:
        """Before the call; raising a GatewayError refuses it (`closed` is then not called for this layer)."""

    def closed(self, call: ChatCall, outcome: ChatOutcome) -> None:
        """After the call, however it ended."""

    def stream_chat(self, call: ChatCall) -> ChatStream:
        observers: list[ObservingLayer] = [self]
        inner = self.inner
        while isinstance(inner, ObservingLayer):
            observers.append(inner)
            inner = inner.inner
        return _observed(observers, inner, call)


async def _observed(observers: list[ObservingLayer], inner: Provider, call: ChatCall) -> ChatStream:
    outcome = ChatOutcome(any(observer.keeps_text for observer in observers))
    opened: list[ObservingLayer] = []
    clock = time.perf_counter_ns
    try:
        for observer in observers:
            await observer.opened(call)
            opened.append(observer)
        events = inner.stream_chat(call)
        try:
            finished = False
            async for event in events:
                now = clock()
                if not outcome.first_ns:
                    outcome.first_ns = now
                if isinstance(event, TextDelta):
                    outcome.characters += len(event.text)
                    if outcome.texts is not None:
                        outcome.texts.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    outcome.characters += len(event.name) + len(event.arguments)
                elif isinstance(event, ChatFinished):
                    outcome.usage = event.usage
                    finished = True
                    yield event
                    continue
                if not outcome.chunks:
                    outcome.first_chunk_ns = now
                outcome.chunks += 1
                outcome.last_chunk_ns = now
                yield event
            outcome.finished = finished
        finally:
            await events.aclose()
    except BaseException as error:
        outcome.error = error
        raise
    finally:
        for observer in reversed(opened):
            observer.closed(call, outcome)
