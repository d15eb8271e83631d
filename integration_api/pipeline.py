"""The request pipeline: the layers every provider call goes through, composed in one place.

Every RPC that reaches a provider (each StreamChat request, unary Chat, Embedding, Reranking, VerifyCredential,
GetModeration, and later the HTTP API) gets its adapter from `Gateway.provider`, which wraps it with
`Pipeline.wrap`. A layer is a `ProviderLayer` subclass (``providers.base``) built per request with the request's
`RequestContext`; it implements the same `Provider` interface and passes on what it does not override.

Layers are listed outermost first. Today the pipeline is only the resilience layer (retries, first-token and
idle timeouts, ``providers.resilience``); policy, accounting, metrics and routing are added here as more layers,
each in one line of `default_layers`, never inside the engine, the gateway or an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from integration_api.context import RequestContext
from integration_api.settings import Settings
from providers.base import Provider
from providers.resilience import ResilientProvider

# Builds one layer around `inner` for one request.
Layer = Callable[[Provider, RequestContext], Provider]


class Pipeline:
    """An ordered stack of layers, outermost first."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = tuple(layers)

    def wrap(self, adapter: Provider, context: RequestContext) -> Provider:
        """`adapter` inside every layer: the first layer listed is the first to see each call."""
        provider = adapter
        for layer in reversed(self.layers):
            provider = layer(provider, context)
        return provider


def default_layers(settings: Settings) -> list[Layer]:
    """The server's layers, outermost first."""

    def resilience(inner: Provider, context: RequestContext) -> Provider:
        return ResilientProvider(inner, context, settings)

    return [resilience]


def build_pipeline(settings: Settings, extra: Sequence[Layer] = ()) -> Pipeline:
    """The default layers with `extra` layers outside them (the first of `extra` outermost)."""
    return Pipeline([*extra, *default_layers(settings)])
