"""What a limiter enforces, and the in-process limiter (the embedded default).

A request is admitted against a list of rules, all or nothing (a request refused by its project's limit must not
use up its key's):

- `RateRule`: at most `limit` units per `period_s` (requests per minute: cost 1; tokens per minute: cost = the
  request's estimated tokens), by GCRA (the generic cell rate algorithm): one stored number per rule, the
  theoretical arrival time (TAT). A burst of the whole `limit` is allowed from idle, then one unit every
  ``period_s / limit``. Settling moves the TAT by the difference between the real and the reserved cost: a
  refund frees capacity at once, a request that used more than it reserved delays the next ones.
- `ConcurrencyRule`: at most `limit` leases held at once; a lease is released when its request ends.
- `QuotaRule`: a counter for one fixed window (a budget's day or month) refused once it has reached `limit`.
  Only exhaustion is checked, not ``spent + cost``: a request's cost is known only at its end, and refusing the
  last request that might fit would turn every budget's tail into a guess. So a budget is exceeded by at most the
  requests running when it ran out (each of which reserved its estimate up front, which stops the others).

A refusal names the rule that refused and how long to wait (the longest wait when several refuse, so that a
retry after it passes them all). `Limiter` is the interface; `LocalLimiter` keeps its state in this process
(one asyncio loop: no await between check and apply, so each acquire is atomic); ``redis_limiter`` shares it
between replicas. Both are tested by the same tests. Times are seconds on the caller's clock (injectable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

CONCURRENCY_RETRY_AFTER_S = 1.0  # when a slot frees is unknowable; the queue-full refusal uses the same advice
LEASE_TTL_S = 900.0  # a lease not released by then (its replica died) is dropped


@dataclass(frozen=True, slots=True)
class RateRule:
    key: str
    limit: int
    period_s: float
    cost: int
    name: str  # for messages, e.g. "key Ab3dEf9hIj0k requests per minute (600)"


@dataclass(frozen=True, slots=True)
class ConcurrencyRule:
    key: str
    limit: int
    name: str


@dataclass(frozen=True, slots=True)
class QuotaRule:
    key: str  # names the window, e.g. "budget:acme\x1fchat:day:2026-11-29:tokens"
    limit: int
    cost: int
    resets_at: float  # when the window ends (then another key counts)
    name: str


Rule: TypeAlias = RateRule | ConcurrencyRule | QuotaRule


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: Rule
    retry_after_s: float


class Limiter(Protocol):
    """Admits requests against rules. `settle` ends a lease: it releases the concurrency rules and adds `deltas`
    (real cost minus reserved cost, one per rule; ignored for concurrency rules) to the others."""

    async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None: ...

    async def settle(self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float) -> None: ...

    async def aclose(self) -> None: ...


def gcra_wait(tat: float | None, now: float, rule: RateRule) -> tuple[float, float]:
    """(seconds to wait before `rule` admits its cost, the TAT after admitting it)."""
    interval = rule.period_s / rule.limit
    new_tat = max(tat if tat is not None else now, now) + rule.cost * interval
    return new_tat - rule.period_s - now, new_tat


def gcra_settle(tat: float | None, now: float, rule: RateRule, delta: int) -> float:
    """The TAT after adding `delta` units (negative: a refund, which never makes capacity beyond a full burst)."""
    base = max(tat if tat is not None else now, now)
    return max(base + delta * rule.period_s / rule.limit, now)


class LocalLimiter:
    """The limits of this process only (the embedded default, and the fail-open fallback of the Redis limiter)."""

    _PRUNE_EVERY = 10_000  # acquisitions between sweeps of state that no longer limits anything

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}  # rule key -> lease -> expires at
        self._spent: dict[str, tuple[int, float]] = {}  # rule key -> (amount, window end)
        self._until_prune = self._PRUNE_EVERY

    def _wait(self, rule: Rule, now: float) -> float:
        if isinstance(rule, RateRule):
            return gcra_wait(self._tats.get(rule.key), now, rule)[0]
        if isinstance(rule, ConcurrencyRule):
            held = self._leases.get(rule.key, {})
            live = sum(1 for expires in held.values() if expires > now)
            return CONCURRENCY_RETRY_AFTER_S if live >= rule.limit else 0.0
        spent, _ = self._spent.get(rule.key, (0, 0.0))
        return rule.resets_at - now if spent >= rule.limit else 0.0

    async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        return self.acquire_now(rules, lease, now)

    def acquire_now(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        """`acquire` without a coroutine (the hot path of the embedded default)."""
        worst: Refusal | None = None
        for rule in rules:
            wait = self._wait(rule, now)
            if wait > 0 and (worst is None or wait > worst.retry_after_s):
                worst = Refusal(rule, wait)
        if worst is not None:
            return worst
        for rule in rules:
            if isinstance(rule, RateRule):
                self._tats[rule.key] = gcra_wait(self._tats.get(rule.key), now, rule)[1]
            elif isinstance(rule, ConcurrencyRule):
                held = self._leases.setdefault(rule.key, {})
                for stale in [held_lease for held_lease, expires in held.items() if expires <= now]:
                    del held[stale]
                held[lease] = now + LEASE_TTL_S
            else:
                spent, _ = self._spent.get(rule.key, (0, 0.0))
                self._spent[rule.key] = (spent + rule.cost, rule.resets_at)
        self._until_prune -= 1
        if self._until_prune <= 0:
            self._prune(now)
        return None

    async def settle(self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float) -> None:
        self.settle_now(rules, deltas, lease, now)

    def settle_now(self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float) -> None:
        for rule, delta in zip(rules, deltas, strict=True):
            if isinstance(rule, ConcurrencyRule):
                held = self._leases.get(rule.key)
                if held is not None:
                    held.pop(lease, None)
            elif delta == 0:
                continue
            elif isinstance(rule, RateRule):
                self._tats[rule.key] = gcra_settle(self._tats.get(rule.key), now, rule, delta)
            elif rule.resets_at > now:
                spent, _ = self._spent.get(rule.key, (0, 0.0))
                self._spent[rule.key] = (spent + delta, rule.resets_at)

    def _prune(self, now: float) -> None:
        self._until_prune = self._PRUNE_EVERY
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._leases = {key: held for key, held in self._leases.items() if held}
        self._spent = {key: value for key, value in self._spent.items() if value[1] > now}

    async def aclose(self) -> None:
        return None
