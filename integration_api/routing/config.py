"""The shape of the `routes` setting: `[routes.NAME]` tables in the config file, or `INTEGRATION_API_ROUTES` as JSON.

```toml
[routes.fast]
hedge_after_ms = 100
[[routes.fast.targets]]
provider = "openai"
model = "gpt-4o-mini"
credential = { key = "sk-...", base_url = "https://..." }   # or credential_ref = "NAME"
[[routes.fast.targets]]
provider = "simulated"
model = "echo"
```

Only pydantic here (the settings module imports it): what the fields mean is in the README's "Routing" section and
``integration_api.routing``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROUTE_PREFIX = "route:"  # providerName "route:NAME" names the route NAME
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The credential fields that name where an adapter connects (Azure calls it endpoint).
URL_FIELDS = ("base_url", "endpoint")

Balance = Literal["weighted", "least_in_flight"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BreakerConfig(_Frozen):
    """When a target's circuit opens, and for how long."""

    failures: int = Field(default=5, ge=1, description="consecutive failures that open the circuit")
    error_rate: float = Field(default=0.5, gt=0, le=1, description="failure share over the window that opens it")
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=20, ge=1, description="attempts in the window before error_rate counts")
    open_s: float = Field(default=30.0, gt=0, description="how long an open circuit skips its target")
    half_open_probes: int = Field(default=1, ge=1, description="attempts let through at once once open_s is over")


class RouteTarget(_Frozen):
    """One deployment a route may send a request to."""

    provider: str = Field(min_length=1)
    model: str = ""
    # Operator-written: its base URL is trusted (no allowlist). Kept out of reprs: it holds a vendor key.
    credential: dict[str, Any] | None = Field(default=None, repr=False)
    credential_ref: str | None = Field(default=None, min_length=1)
    weight: float = Field(default=1.0, gt=0)
    rank: int | None = Field(default=None, ge=0, description="default: the target's position in the list")
    parameters: dict[str, Any] = Field(default_factory=dict)
    max_concurrent: int = Field(default=0, ge=0, description="requests at this target at once; 0 = no cap")

    @model_validator(mode="after")
    def _one_credential(self) -> RouteTarget:
        if self.credential is not None and self.credential_ref is not None:
            raise ValueError("a target has either credential or credential_ref, not both")
        if self.provider.startswith(ROUTE_PREFIX):
            raise ValueError("a route's target is a provider, not another route")
        for name in self.parameters:
            if not name.startswith("model."):
                raise ValueError(f"target parameter {name!r} must be named model.<name>")
        for field in URL_FIELDS:
            value = (self.credential or {}).get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"credential field {field!r} must be text")
        return self


class RouteConfig(_Frozen):
    """A named, ordered list of targets and how requests are spread over them."""

    targets: list[RouteTarget] = Field(min_length=1)
    balance: Balance = "weighted"
    hedge_after_ms: float | None = Field(default=None, gt=0, description="start the next target too after this")
    hedge_budget_percent: float = Field(default=10.0, ge=0, le=100, description="hedges per 100 requests, at most")
    hedge_budget_window_s: float = Field(default=60.0, gt=0)
    first_token_timeout_ms: float | None = Field(
        default=None, gt=0, description="give up on one target (and fall back) without a first event by then"
    )
    # Beyond retryable failures, fall back on these too: upstream HTTP statuses (400, 413...) or gateway status
    # names ("INVALID_ARGUMENT", "NOT_FOUND"...), e.g. a prompt too long for one model's context.
    fallback_on: list[int | str] = Field(default_factory=list)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    @field_validator("fallback_on")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        for entry in value:
            if isinstance(entry, int) and not 100 <= entry <= 599:
                raise ValueError(f"fallback_on entry {entry} is not an HTTP status")
            if isinstance(entry, str) and not entry.isupper():
                raise ValueError(f"fallback_on entry {entry!r} is not a status name such as INVALID_ARGUMENT")
        return value


def check_route_names(routes: dict[str, RouteConfig]) -> dict[str, RouteConfig]:
    """Route names are what follows "route:" in a providerName (and "route/" in an OpenAI model string)."""
    for name in routes:
        if not _ROUTE_NAME.match(name):
            raise ValueError(f"route name {name!r} must be letters, digits, '_', '.' or '-'")
    return routes
