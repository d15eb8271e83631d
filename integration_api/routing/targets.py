"""A route's targets: their per-process counters, the order a request tries them in, and building their adapters.

- **Order**: by `rank` (default: the position in the list); among targets of equal rank, `weighted` draws a
  weighted random order (each request), `least_in_flight` puts the target with the fewest requests in flight
  first (ties broken by the weighted draw).
- **Credential**: the target's own `credential` (written by the operator, so its base URL is trusted: it is
  passed to the adapter as `ProviderEnv.trusted_base_url`, which no request can set), or its `credential_ref`
  (a stored credential, resolved as a request's reference is, under the principal's key scope; its base URL goes
  through the allowlist like any stored credential's), or else the request's own credential (allowlisted).
- **Breaker key**: provider + base URL + a digest of the credential used, so two routes naming one deployment
  share its breaker, and one bad key does not open the circuit of another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Protocol

import orjson

from integration_api.context import RequestContext
from integration_api.errors import Unimplemented
from integration_api.routing.config import URL_FIELDS, Balance, RouteTarget
from providers.base import CredentialValue, Provider, ProviderEnv
from providers.types import ChatCall, JsonValue

if TYPE_CHECKING:
    from providers.registry import ProviderRegistry

CREDENTIAL_REF_KEY = "credential_ref"  # as ``integration_api.credentials`` reads it
EWMA_WEIGHT = 0.2  # of the newest first-token latency in `Target.first_token_ms`

BreakerKey = tuple[str, str, str]  # provider, base URL, credential digest


class CredentialResolver(Protocol):
    """What resolves a `credential_ref` (``integration_api.credentials.StoredCredentials``)."""

    def resolve(self, context: RequestContext, credential: CredentialValue) -> CredentialValue: ...


@dataclass(slots=True, eq=False)
class Target:
    """One configured target of one route, with what this process has seen of it."""

    route: str
    index: int
    config: RouteTarget
    rank: int
    in_flight: int = 0
    attempts: int = 0
    failures: int = 0
    first_token_ms: float = 0.0  # moving average of the time to the first event
    last_key: BreakerKey | None = None  # the breaker its latest attempt used (what `routes` shows)

    @property
    def label(self) -> str:
        """ "provider/model", as SERVED_BY says it."""
        return f"{self.config.provider}/{self.config.model}" if self.config.model else self.config.provider

    @property
    def full(self) -> bool:
        return 0 < self.config.max_concurrent <= self.in_flight

    def record_first_token(self, seconds: float) -> None:
        ms = seconds * 1000.0
        self.first_token_ms = (
            ms if not self.first_token_ms else (1 - EWMA_WEIGHT) * self.first_token_ms + EWMA_WEIGHT * ms
        )


def make_targets(route: str, targets: Sequence[RouteTarget]) -> list[Target]:
    return [Target(route, i, t, t.rank if t.rank is not None else i) for i, t in enumerate(targets)]


def plan(targets: Sequence[Target], balance: Balance, rng: random.Random) -> list[Target]:
    """The order one request tries `targets` in (see the module docstring)."""
    ordered: list[Target] = []
    for _rank, group in groupby(sorted(targets, key=lambda t: (t.rank, t.index)), key=lambda t: t.rank):
        members = list(group)
        if len(members) == 1:
            ordered.extend(members)
            continue
        # Efraimidis-Spirakis: sorting by u ** (1 / weight) is a weighted random permutation.
        draw = {id(t): rng.random() ** (1.0 / t.config.weight) for t in members}
        if balance == "least_in_flight":
            members.sort(key=lambda t: (t.in_flight, -draw[id(t)]))
        else:
            members.sort(key=lambda t: -draw[id(t)])
        ordered.extend(members)
    return ordered


def credential_digest(credential: CredentialValue) -> str:
    return hashlib.sha256(orjson.dumps(credential, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def base_url_of(provider: str, credential: CredentialValue, provider_base_urls: Mapping[str, str]) -> str:
    for field in URL_FIELDS:
        value = credential.get(field)
        if isinstance(value, str) and value:
            return value
    return provider_base_urls.get(provider, "")


@dataclass(frozen=True, slots=True)
class Built:
    """A target's adapter for one request, and the breaker it answers to."""

    adapter: Provider
    key: BreakerKey
    context: RequestContext


class TargetBuilder:
    """Builds a target's adapter from the registry, as `Gateway.provider` builds a request's (same client lease)."""

    def __init__(self, registry: ProviderRegistry, credentials: CredentialResolver | None) -> None:
        self._registry = registry
        self._credentials = credentials

    def check(self, target: RouteTarget) -> None:
        """At start-up: the target's provider is enabled (raises ValueError naming it otherwise)."""
        if target.provider not in self._registry:
            raise ValueError(f"provider {target.provider!r} is not enabled on this server")

    def build(self, target: Target, request_credential: CredentialValue, env: ProviderEnv) -> Built:
        config = target.config
        assert env.context is not None  # a route is only ever built for a request (`RouteProvider` checks)
        context = env.context.for_provider(config.provider, config.model or env.context.model)
        trusted: str | None = None
        credential: CredentialValue
        if config.credential is not None:
            credential = config.credential
            trusted = next((v for f in URL_FIELDS if isinstance(v := credential.get(f), str) and v), None)
        elif config.credential_ref is not None:
            if self._credentials is None:
                raise Unimplemented(f"route target {target.label} references a stored credential; none are kept")
            credential = self._credentials.resolve(context, {CREDENTIAL_REF_KEY: config.credential_ref})
        else:
            credential = request_credential
        spec = self._registry.get(config.provider)
        if context.rpc not in spec.rpcs:
            raise Unimplemented(f"provider {config.provider!r} does not support {context.rpc}")
        adapter = spec.factory(credential, ProviderEnv(env.settings, env.clients, context, trusted))
        key = (config.provider, base_url_of(config.provider, credential, env.settings.provider_base_urls),
               credential_digest(credential))  # fmt: skip
        return Built(adapter, key, context)


def target_call(call: ChatCall, target: RouteTarget) -> ChatCall:
    """The request as this target gets it: its model, and its parameters over the request's."""
    parameters: dict[str, JsonValue] = {**call.parameters, **target.parameters}
    if target.model:
        parameters["model.name"] = target.model
    return dataclasses.replace(call, parameters=parameters)
