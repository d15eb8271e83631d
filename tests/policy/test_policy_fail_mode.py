"""Redis unreachable (a closed port): fail open limits with this process's counts, fail closed refuses."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from integration_api.errors import Unavailable
from integration_api.policy.limits import LocalLimiter, RateRule, Refusal, Rule
from integration_api.policy.redis_limiter import RETRY_INTERVAL_S, FailoverLimiter, RedisLimiter

T0 = 1_800_000_000.0
RULE = RateRule("k:rpm", 2, 60.0, 1, "key k requests per minute (2)")


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/11"  # nothing listens there any more


async def test_fail_open_limits_locally_and_logs_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    limiter = FailoverLimiter(RedisLimiter(closed_port_url()), "open")
    with caplog.at_level(logging.ERROR, logger="integration_api.policy.redis_limiter"):
        decisions = [await limiter.acquire([RULE], f"l{n}", T0) for n in range(4)]
        later = await limiter.acquire([RULE], "again", T0 + RETRY_INTERVAL_S + 0.1)  # Redis tried again: still down
    assert [d is None for d in decisions] == [True, True, False, False]  # this process's own limit of 2
    assert isinstance(later, Refusal)
    assert limiter.down and limiter.outages == 1 and limiter.errors == 2 and limiter.fallback_decisions == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Redis is unreachable" in errors[0].getMessage()
    await limiter.settle([RULE], [0], "l0", T0)  # a lease admitted locally settles locally
    await limiter.aclose()


async def test_fail_closed_refuses_with_unavailable() -> None:
    limiter = FailoverLimiter(RedisLimiter(closed_port_url()), "closed")
    with pytest.raises(Unavailable) as refused:
        await limiter.acquire([RULE], "l", T0)
    assert refused.value.retryable and refused.value.retry_after == RETRY_INTERVAL_S
    assert "rate_limit_fail_mode is closed" in refused.value.message
    await limiter.aclose()


class Flaky(LocalLimiter):
    """A shared limiter that fails while `down` (the Redis boundary, without a Redis to stop)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        if self.down:
            raise RedisConnectionError("connection refused")
        return await super().acquire(rules, lease, now)


async def test_recovery_is_logged_and_limits_are_shared_again(caplog: pytest.LogCaptureFixture) -> None:
    shared = Flaky()
    limiter = FailoverLimiter(shared, "open")
    with caplog.at_level(logging.WARNING, logger="integration_api.policy.redis_limiter"):
        assert await limiter.acquire([RULE], "a", T0) is None
        shared.down = False
        assert await limiter.acquire([RULE], "b", T0 + 0.5) is None  # within the retry interval: still local
        assert await limiter.acquire([RULE], "c", T0 + RETRY_INTERVAL_S + 0.1) is None  # shared again
    assert not limiter.down
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert await limiter.acquire([RULE], "d", T0 + 2) is None and await limiter.acquire([RULE], "e", T0 + 2)
