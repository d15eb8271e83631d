"""What the usage log holds: one `UsageRecord` per request, and the sums `integration-api usage` asks for.

A record never holds a credential: the principal is its ids (organization, project, key id, user), never a key or
token. `prompt` and `reply` are filled only when ``log_content`` is on; otherwise they stay None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OK = "OK"
CANCELLED = "CANCELLED"

# The names `--group-by` accepts, each a column of the records table (`day` is derived from `time`, UTC).
GROUP_KEYS: Mapping[str, str] = {
    "organization": "organization_id",
    "project": "project_id",
    "key": "key_id",
    "user": "user_id",
    "rpc": "rpc",
    "provider": "provider",
    "model": "model",
    "status": "status",
    "day": "day",
}
DEFAULT_GROUP_BY = ("organization", "project")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's outcome. `time` is when it started (Unix seconds); durations are milliseconds."""

    time: float
    request_id: str
    stream_id: str
    organization_id: str
    project_id: str
    key_id: str | None
    user_id: str | None
    auth_method: str
    rpc: str
    provider: str
    model: str
    status: str  # the gateway status name: OK, CANCELLED, INVALID_ARGUMENT, UNAVAILABLE...
    code: int  # its HTTP-like code: 200, 499, 400, 503...
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0  # in the price table's currency; 0 when the model has no price
    ttft_ms: float | None = None  # time to the first event of a stream (None: no event, or a unary RPC)
    total_ms: float = 0.0
    retries: int = 0  # upstream attempts beyond the first
    prompt: str | None = None  # the last user message (log_content only)
    reply: str | None = None  # the reply's text (log_content only)


# The records table's columns, in the order `UsageRecord` lists them (both stores write them in this order).
COLUMNS: tuple[str, ...] = tuple(UsageRecord.__dataclass_fields__)


def as_tuple(record: UsageRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in COLUMNS)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which records to sum (started at or after `since`, Unix seconds; of one project) and how to group them."""

    since: float | None = None
    project: str | None = None
    organization: str | None = None
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY

    def __post_init__(self) -> None:
        unknown = [key for key in self.group_by if key not in GROUP_KEYS]
        if unknown:
            raise ValueError(f"cannot group by {', '.join(unknown)}: choose from {', '.join(GROUP_KEYS)}")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """The sums over one group. `errors` counts failed requests (neither OK nor CANCELLED)."""

    keys: Mapping[str, str | None] = field(default_factory=dict)
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.keys,
            "requests": self.requests,
            "errors": self.errors,
            "cancelled": self.cancelled,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        }
