"""The one interface every provider implements, and how providers are described and built.

A `Provider` is a caller bound to one credential: the engine builds one per request with its
`ProviderSpec.factory(credential, env)`, so every request uses its own `Credential`. Providers speak only the
gateway's own types (``providers.types``) and raise only ``integration_api.errors.GatewayError``; vendor types
and exceptions stay inside each adapter.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integration_api.errors import Unimplemented
from providers.clients import ClientSource
from providers.types import (
    ChatCall,
    ChatEvent,
    EmbeddingCall,
    EmbeddingResult,
    JsonValue,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
)

if TYPE_CHECKING:
    from integration_api.context import RequestContext
    from integration_api.settings import Settings

# The RPC names of the protocol, as `ProviderSpec.rpcs` and GetVersion list them.
CHAT_RPCS = frozenset({"Chat", "StreamChat", "VerifyCredential"})
ALL_RPCS = CHAT_RPCS | {"Embedding", "Reranking", "GetModeration"}

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

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        return await self.inner.embed(call)

    async def rerank(self, call: RerankCall) -> RerankResult:
        return await self.inner.rerank(call)

    async def verify_credential(self) -> str:
        return await self.inner.verify_credential()

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        return await self.inner.moderate(call)
