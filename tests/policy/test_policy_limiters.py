"""The limiter rules, the same tests for the in-process and the Redis limiter, on a clock the tests move."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from integration_api.policy.limits import (
    CONCURRENCY_RETRY_AFTER_S,
    LEASE_TTL_S,
    ConcurrencyRule,
    Limiter,
    QuotaRule,
    RateRule,
)
from integration_api.policy.redis_limiter import RedisLimiter

T0 = 1_800_000_000.0  # a fixed wall-clock instant (2027): nothing here waits for real time


def rpm(limit: int, key: str = "k:rpm") -> RateRule:
    return RateRule(key, limit, 60.0, 1, f"rpm {limit}")


async def admitted(limiter: Limiter, rules: list[RateRule | ConcurrencyRule | QuotaRule], n: int, now: float) -> int:
    count = 0
    for index in range(n):
        if await limiter.acquire(rules, f"lease-{now}-{index}", now) is None:
            count += 1
    return count


async def test_requests_per_minute_admit_a_burst_of_the_limit_then_one_per_interval(limiter: Limiter) -> None:
    rule = rpm(5)
    assert await admitted(limiter, [rule], 8, T0) == 5
    refusal = await limiter.acquire([rule], "x", T0)
    assert refusal is not None and refusal.rule == rule
    assert refusal.retry_after_s == pytest.approx(12.0, abs=0.01)  # 60 s / 5: the next unit
    assert await admitted(limiter, [rule], 3, T0 + 11.9) == 0
    assert await admitted(limiter, [rule], 3, T0 + 12.0) == 1
    assert await admitted(limiter, [rule], 9, T0 + 200.0) == 5  # idle for long: a full burst again, no more


async def test_tokens_are_reserved_then_settled(limiter: Limiter) -> None:
    def tpm(cost: int) -> RateRule:
        return RateRule("k:tpm", 1000, 60.0, cost, "tpm 1000")

    assert await limiter.acquire([tpm(600)], "a", T0) is None
    assert await limiter.acquire([tpm(600)], "b", T0) is not None  # 600 + 600 > 1000
    await limiter.settle([tpm(600)], [-500], "a", T0)  # it used 100: 500 refunded
    assert await limiter.acquire([tpm(600)], "b", T0) is None  # 100 + 600
    await limiter.settle([tpm(600)], [+400], "b", T0)  # it used 1000: 400 more than reserved
    refusal = await limiter.acquire([tpm(1)], "c", T0)
    assert refusal is not None
    # 1100 used of 1000 per minute: the next token fits once 101 tokens' worth (6.06 s) has passed.
    assert refusal.retry_after_s == pytest.approx(101 * 0.06, abs=0.01)


async def test_a_refund_never_makes_more_than_a_full_burst(limiter: Limiter) -> None:
    rule = rpm(3)
    await limiter.settle([rule], [-10], "nobody", T0)
    assert await admitted(limiter, [rule], 5, T0) == 3


async def test_concurrency_leases_are_held_until_settled(limiter: Limiter) -> None:
    rule = ConcurrencyRule("k:conc", 2, "concurrency 2")
    assert await limiter.acquire([rule], "a", T0) is None
    assert await limiter.acquire([rule], "b", T0) is None
    refusal = await limiter.acquire([rule], "c", T0)
    assert refusal is not None and refusal.retry_after_s == CONCURRENCY_RETRY_AFTER_S
    await limiter.settle([rule], [0], "a", T0)
    assert await limiter.acquire([rule], "c", T0) is None
    assert await limiter.acquire([rule], "d", T0) is not None
    # A lease never released (its replica died) lapses by itself.
    assert await limiter.acquire([rule], "d", T0 + LEASE_TTL_S + 1) is None


async def test_a_quota_refuses_once_spent_until_its_window_ends(limiter: Limiter) -> None:
    def budget(cost: int) -> QuotaRule:
        return QuotaRule("b:day", 100, cost, T0 + 3600.0, "daily token budget")

    assert await limiter.acquire([budget(60)], "a", T0) is None
    assert await limiter.acquire([budget(60)], "b", T0) is None  # 60 < 100: still room, so it runs
    refusal = await limiter.acquire([budget(1)], "c", T0 + 600.0)
    assert refusal is not None and refusal.retry_after_s == pytest.approx(3000.0)
    await limiter.settle([budget(60)], [-50], "b", T0)  # b used 10: 70 spent
    assert await limiter.acquire([budget(10)], "c", T0) is None


async def test_all_or_nothing_across_rules(limiter: Limiter) -> None:
    key, project = rpm(10, "k:rpm"), rpm(2, "p:rpm")
    assert await admitted(limiter, [key, project], 5, T0) == 2
    # The project refused three: none of them used the key's allowance.
    assert await admitted(limiter, [key], 20, T0) == 8


async def test_the_longest_wait_is_reported(limiter: Limiter) -> None:
    fast, slow = rpm(60, "a:rpm"), rpm(1, "b:rpm")
    await limiter.acquire([fast], "x", T0)
    for index in range(60):
        await limiter.acquire([fast], f"f{index}", T0)
    await limiter.acquire([slow], "y", T0)
    refusal = await limiter.acquire([fast, slow], "z", T0)
    assert refusal is not None and refusal.rule == slow and refusal.retry_after_s == pytest.approx(60.0, abs=0.01)


async def test_settlements_ending_together_each_count(limiter: Limiter) -> None:
    # The Redis limiter settles the leases that end while a settlement is in flight in one script call: each of
    # them must still release its slot and apply its own refund.
    slots = ConcurrencyRule("k:conc", 30, "concurrency 30")

    def tpm(cost: int) -> RateRule:
        return RateRule("k:tpm", 3000, 60.0, cost, "tpm 3000")

    for index in range(30):
        assert await limiter.acquire([slots, tpm(100)], f"lease-{index}", T0) is None
    assert await limiter.acquire([slots, tpm(1)], "one-too-many", T0) is not None
    await asyncio.gather(*(limiter.settle([slots, tpm(100)], [0, -90], f"lease-{i}", T0) for i in range(30)))
    # Every slot is free, and 30 x 90 tokens were refunded: 300 used of 3000, so 2,700 fit now and no more.
    assert await admitted(limiter, [slots, tpm(90)], 31, T0) == 30
    assert await limiter.acquire([tpm(1)], "after", T0) is not None


async def test_requests_acquiring_together_are_each_all_or_nothing(limiter: Limiter) -> None:
    # The Redis limiter acquires for the requests that arrive during an acquisition in one script call.
    key, project = rpm(10, "k:rpm"), rpm(3, "p:rpm")
    answers = await asyncio.gather(*(limiter.acquire([key, project], f"lease-{i}", T0) for i in range(6)))
    assert sum(answer is None for answer in answers) == 3
    refused = [answer for answer in answers if answer is not None]
    assert all(answer.rule == project for answer in refused)
    assert await admitted(limiter, [key], 20, T0) == 7  # the three refused used none of the key's allowance


async def test_a_request_cancelled_while_acquiring_gives_back_what_it_got(redis_server: str) -> None:
    prefix = f"test:{secrets.token_hex(4)}:"
    slots = ConcurrencyRule("k:conc", 2, "concurrency 2")
    limiter = RedisLimiter(redis_server, prefix=prefix)
    first = asyncio.ensure_future(limiter.acquire([slots], "a", T0))
    second = asyncio.ensure_future(limiter.acquire([slots], "b", T0))
    await asyncio.sleep(0)  # both have been submitted
    second.cancel()
    assert await first is None
    with pytest.raises(asyncio.CancelledError):
        await second
    await limiter.aclose()  # waits for b's acquisition and for the release of what it was granted
    again = RedisLimiter(redis_server, prefix=prefix)
    try:
        assert await again.acquire([slots], "c", T0) is None  # a holds one slot; b none
        assert await again.acquire([slots], "d", T0) is not None
    finally:
        await again.aclose()


async def test_a_settlement_counts_for_the_acquisition_after_it(limiter: Limiter) -> None:
    # The Redis limiter sends a settlement with the next acquisition, applied before it in the same call.
    slots = ConcurrencyRule("k:conc", 1, "concurrency 1")
    assert await limiter.acquire([slots], "a", T0) is None
    settling = asyncio.ensure_future(limiter.settle([slots], [0], "a", T0))
    await asyncio.sleep(0)  # the settlement is queued
    assert await limiter.acquire([slots], "b", T0) is None  # a's slot was given back first
    await settling
    assert await limiter.acquire([slots], "c", T0) is not None
