"""Property: whatever the interleaving of acquire, settle and cancel, a limiter never admits beyond its limits.

For the in-process and the Redis limiter alike. The limits checked are what each rule promises:

- requests per period (GCRA, burst = limit): in any interval [a, b], at most ``limit + (b - a) * limit / period``
  admissions (a full burst, then the refill);
- concurrency: never more leases held than the limit;
- a budget window: a request is admitted only while the amount spent (reservations plus settlements) is below it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_api.policy.limits import (
    ConcurrencyRule,
    Limiter,
    LocalLimiter,
    QuotaRule,
    RateRule,
    Refusal,
    Rule,
)
from integration_api.policy.redis_limiter import RedisLimiter

T0 = 1_800_000_000.0
RPM, CONCURRENT, BUDGET, PERIOD = 4, 3, 50, 60.0
WINDOW_END = T0 + 10_000.0

Operation = tuple[str, float, int, int]  # (acquire | settle | cancel, seconds to advance first, cost, which lease)
operations = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "acquire", "settle", "cancel"]),
        st.sampled_from([0.0, 0.0, 0.5, 3.0, 14.9, 15.0, 40.0]),
        st.integers(min_value=1, max_value=20),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=40,
)


@dataclass
class Run:
    now: float = T0
    admitted_at: list[float] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)  # lease -> its reserved cost
    spent: int = 0


def rules(cost: int) -> list[Rule]:
    return [
        RateRule("rpm", RPM, PERIOD, 1, "rpm"),
        ConcurrencyRule("conc", CONCURRENT, "concurrency"),
        QuotaRule("budget", BUDGET, cost, WINDOW_END, "budget"),
    ]


async def play(limiter: Limiter, ops: list[Operation]) -> Run:
    run = Run()
    for number, (kind, advance, cost, which) in enumerate(ops):
        run.now += advance
        if kind == "acquire":
            lease = f"lease-{number}"
            spent_before = run.spent
            if await limiter.acquire(rules(cost), lease, run.now) is None:
                assert spent_before < BUDGET, "admitted with the budget spent"
                run.admitted_at.append(run.now)
                run.held[lease] = cost
                run.spent += cost
                assert len(run.held) <= CONCURRENT, "more leases held than the concurrency limit"
        elif run.held:
            lease = sorted(run.held)[which % len(run.held)]
            reserved = run.held.pop(lease)
            # settle: the real cost differs from the reservation; cancel: nothing was used
            delta = (cost - reserved) if kind == "settle" else -reserved
            await limiter.settle(rules(reserved), [0, 0, delta], lease, run.now)
            run.spent += delta
    times = run.admitted_at
    for first in range(len(times)):
        for last in range(first, len(times)):
            in_interval = last - first + 1
            allowed = RPM + (times[last] - times[first]) * RPM / PERIOD
            assert in_interval <= allowed + 1e-9, f"{in_interval} admitted in {times[last] - times[first]} s"
    return run


@settings(max_examples=150, deadline=None)
@given(ops=operations)
def test_the_local_limiter_never_admits_beyond_its_limits(ops: list[Operation]) -> None:
    asyncio.run(play(LocalLimiter(), ops))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_the_redis_limiter_never_admits_beyond_its_limits(redis_server: str, ops: list[Operation]) -> None:
    async def main() -> None:
        limiter = RedisLimiter(redis_server, prefix=f"prop:{secrets.token_hex(6)}:")
        try:
            await play(limiter, ops)
        finally:
            await limiter.aclose()

    asyncio.run(main())


def test_the_property_can_fail() -> None:
    """A limiter that admits everything breaks it: the property is not vacuous."""

    class Lenient(LocalLimiter):
        async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
            return None

    with pytest.raises(AssertionError):
        asyncio.run(play(Lenient(), [("acquire", 0.0, 1, 0)] * 5))
