"""Routing: a named route (``providerName = "route:NAME"``) spreads requests over several deployments.

A route is configured in the `routes` setting (``integration_api.routing.config``) as an ordered list of targets
(provider, model, credential or credential_ref, weight, rank, parameters, max_concurrent). A request naming it
gets fallback before the first token, load balancing across targets of equal rank, a circuit breaker per
deployment and, with `hedge_after_ms`, a hedged first token (``integration_api.routing.router``).

**A route is a registered provider, not a pipeline layer.** `install_routes` registers one `ProviderSpec` per
route, named ``route:NAME``, in the server's provider registry at start-up; its factory builds a `RouteProvider`,
which builds each target's adapter from the same registry (with the request's client lease, so SDK clients are
shared as usual). So:

- `Gateway.provider` needs no special case: it looks ``route:fast`` up like ``openai`` and wraps what the factory
  builds in the same pipeline (usage, stats, sessions, resilience); GetVersion, ``GET /v1/models`` and the
  OpenAI-compatible API's model check see routes as they see providers;
- only requests that name a route pay for routing: a layer in `default_layers` would sit in every request's path
  to do nothing for most of them;
- the engine and every adapter are untouched: to the engine a route is one more `Provider`, and to an adapter a
  target is one more request with a credential.

**Routing sits inside the resilience layer.** The pipeline's `ResilientProvider` wraps the route, not each
target: a target's retryable failure moves the request to the next target at once, with no backoff (that is what
a route is for: another deployment is likely healthy now, the same one in 0.5 s is not), and a target gets no
retries of its own. Only when every target failed does the resilience layer retry the route as a whole, with
backoff (open circuits are then skipped without a call); its first-token and idle timeouts bound the routed
reply like any other, while `first_token_timeout_ms` bounds each target's own wait.

**Trusted base URLs.** A base URL written by the operator in a target's `credential` is trusted; a caller's
still goes through `allowed_base_urls`. The router passes the operator's URL to the target's adapter as
`ProviderEnv.trusted_base_url`, a field only server code sets (a request controls the credential's contents,
never the `ProviderEnv`), and ``providers.endpoints.resolve_base_url`` skips the allowlist only for a credential
URL equal to it.

This ``__init__`` imports only the configuration models: the settings module needs them before anything else of
the gateway can be imported. `install_routes` is in ``integration_api.routing.install``.
"""

from __future__ import annotations

from integration_api.routing.config import ROUTE_PREFIX, BreakerConfig, RouteConfig, RouteTarget

__all__ = ["ROUTE_PREFIX", "BreakerConfig", "RouteConfig", "RouteTarget"]
