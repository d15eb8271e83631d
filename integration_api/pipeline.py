"""The request pipeline: the layers every provider call goes through, composed in one place.

Every RPC that reaches a provider (each StreamChat request, unary Chat, Embedding, Reranking, VerifyCredential,
GetModeration, and later the HTTP API) gets its adapter from `Gateway.provider`, which wraps it with
`Pipeline.wrap`. A layer is a `ProviderLayer` subclass (``providers.base``) built per request with the request's
`RequestContext`; it implements the same `Provider` interface and passes on what it does not override.

Layers are listed outermost first: the request's trace span (only when tracing is on,
``integration_api.observability``), the usage layer (one usage record per request, ``integration_api.usage``), the
stats layer (every request counted for GetServerStats and the Prometheus metrics, refusals included), the session
layer (conversations kept by the server, only for requests naming a session), the policy layer (scopes, rate
limits and budgets, ``integration_api.policy``: a refusal never reaches the layers inside it), the resilience
layer (retries, first-token and idle timeouts, ``providers.resilience``), then one trace span per upstream attempt
(tracing on); policy, accounting, metrics and routing are added here as more layers, each in one line of
`default_layers`, never inside the engine, the gateway or an adapter. What layers share across requests
(counters, the session store) is the pipeline's `ServerState`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from integration_api.context import RequestContext
from integration_api.observability.tracing import tracing_layers
from integration_api.policy import PolicyLayer
from integration_api.sessions.layer import SessionLayer
from integration_api.sessions.state import ServerState
from integration_api.sessions.stats import StatsLayer
from integration_api.settings import Settings
from integration_api.usage.layer import UsageLayer, usd_pricing
from providers.base import Provider
from providers.resilience import ResilientProvider

# Builds one layer around `inner` for one request.
Layer = Callable[[Provider, RequestContext], Provider]


class Pipeline:
    """An ordered stack of layers, outermost first, and the state they share."""

    def __init__(self, layers: Sequence[Layer], state: ServerState | None = None) -> None:
        self.layers = tuple(layers)
        self.state = state

    def wrap(self, adapter: Provider, context: RequestContext) -> Provider:
        """`adapter` inside every layer: the first layer listed is the first to see each call."""
        provider = adapter
        for layer in reversed(self.layers):
            provider = layer(provider, context)
        return provider


def default_layers(settings: Settings, state: ServerState) -> list[Layer]:
    """The server's layers, outermost first."""

    pricing = usd_pricing(state.policy.prices)  # the usage log's costs are the budgets' costs

    def usage(inner: Provider, context: RequestContext) -> Provider:
        return UsageLayer(inner, context, state.usage, pricing=pricing, log_content=settings.log_content)

    def policy(inner: Provider, context: RequestContext) -> Provider:
        return PolicyLayer(inner, context, state.policy)

    def stats(inner: Provider, context: RequestContext) -> Provider:
        return StatsLayer(inner, context, state.stats)

    def sessions(inner: Provider, context: RequestContext) -> Provider:
        return SessionLayer(inner, context, state.sessions) if context.session_id else inner

    def resilience(inner: Provider, context: RequestContext) -> Provider:
        return ResilientProvider(inner, context, settings)

    traced = tracing_layers()  # none unless OTEL_EXPORTER_OTLP_ENDPOINT is set (integration_api.observability)
    # The session layer is outside the policy layer: a request takes its place in its session's line before anything
    # awaits (requests on one session run in the order they arrived; the policy's first read of the project rows
    # would otherwise let a later request overtake an earlier one), and the policy judges what the provider is
    # sent: the session's model and history included (its scope, its token reservation).
    return [*traced.outer, usage, stats, sessions, policy, resilience, *traced.attempts]


def build_pipeline(settings: Settings, extra: Sequence[Layer] = (), state: ServerState | None = None) -> Pipeline:
    """The default layers with `extra` layers outside them (the first of `extra` outermost), sharing `state`
    (by default a new one: the store the settings choose)."""
    state = state if state is not None else ServerState(settings)
    return Pipeline([*extra, *default_layers(settings, state)], state)
