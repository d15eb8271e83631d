"""Limits shared by every replica: the same rules as `LocalLimiter`, kept in Redis, one Lua script per decision.

Why a hand-written GCRA script and not the `limits` library: `limits` (its async Redis storage, moving or sliding
window) checks one limit per call and only adds, so a request checked against its key's and its project's limits
would take several round trips, could use up the key's allowance and then be refused by the project's, and
could not settle a token reservation (a negative cost) or hold a concurrency slot. One script does every rule of a
request atomically in one round trip, and GCRA stores one number per rule where a moving window stores one entry
per request. Measured on this 2-core machine against the local Redis (2,000 sequential requests, three
requests-per-minute limits each, 2026-12-01): `limits` 5.8 moving window 495 µs wall / 366 µs client CPU per
request, sliding window counter 719 / 396 µs; this script 245 / 128 µs.

Layout under the key prefix: ``rl:<rule key>`` holds a rate rule's TAT (milliseconds, expiring when it no longer
limits), a concurrency rule's sorted set of leases (scored by when each lapses, `LEASE_TTL_S`, so a replica that
died releases its slots by itself) or a quota's counter (expiring a day after its window). Times come from the
caller's clock, so replicas must keep their clocks in step (NTP); in exchange tests move time without waiting.
One Redis server (or a primary and its replicas), not Redis Cluster: a request's keys are in different slots.

`FailoverLimiter` wraps it with the behaviour `rate_limit_fail_mode` chooses while Redis is unreachable: ``open``
decides with this process's own `LocalLimiter` (one loud log line per outage; `outages` and `fallback_decisions`
count for a metrics exporter), ``closed`` refuses with UNAVAILABLE. After a failure Redis is tried again at most
every `RETRY_INTERVAL_S`, so an outage does not add a connection timeout to every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Literal, TypeAlias

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from integration_api.batching import Batcher
from integration_api.errors import Unavailable
from integration_api.policy.limits import (
    CONCURRENCY_RETRY_AFTER_S,
    LEASE_TTL_S,
    ConcurrencyRule,
    Limiter,
    LocalLimiter,
    RateRule,
    Refusal,
    Rule,
)

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "integration_api:"
RETRY_INTERVAL_S = 1.0
SOCKET_TIMEOUT_S = 0.5
QUOTA_KEEP_MS = 86_400_000
SETTLE_DELAY_S = 0.02  # the longest a settlement waits for an acquisition to ride with
FailMode = Literal["open", "closed"]

# Arguments are packed into a few space-separated strings, parsed by the script: redis-py encodes every argument
# of a command in Python, and one argument per number made packing the command most of a request's client CPU
# (36 arguments: ~190 µs of 395; measured 2026-12-01, see `RedisLimiter`).
#
# One call: first the settlements waiting for it, then the acquisitions, each all or nothing, in order.
# KEYS: every rule of every settlement, then of every acquisition, in order. ARGV[1]: "now lease-TTL
# full-concurrency-retry-after quota-keep settlements" (times in ms; settlements: how many of the arguments after
# this one are settlements); then one argument per settlement, then one per acquisition: the lease id, then four
# words per rule: kind (r, c, q), limit, delta (settlements) or cost (acquisitions), parameter (r: period in ms;
# q: window end in ms). Returns two items per acquisition: 0 and '' when admitted, else the refusing rule's index
# (1-based, in that request's rules) and its wait in ms as text.
_CALL = """
local head = {}
for word in string.gmatch(ARGV[1], '%S+') do head[#head + 1] = word end
local now, ttl, full_wait, keep = tonumber(head[1]), tonumber(head[2]), tonumber(head[3]), tonumber(head[4])
local settlements = tonumber(head[5])
local k = 0
local function tat_of(key)  -- a rate rule's theoretical arrival time, never in the past
  local stored = redis.call('GET', key)
  local tat = stored and tonumber(stored) or now
  if tat < now then return now end
  return tat
end
local function words(a)
  local spec = {}
  for word in string.gmatch(ARGV[a], '%S+') do spec[#spec + 1] = word end
  return spec, (#spec - 1) / 4
end
for a = 2, 1 + settlements do
  local spec, rules = words(a)
  local lease = spec[1]
  for i = 1, rules do
    local key, at = KEYS[k + i], 1 + (i - 1) * 4
    local kind, limit = spec[at + 1], tonumber(spec[at + 2])
    local delta, param = tonumber(spec[at + 3]), tonumber(spec[at + 4])
    if kind == 'c' then
      redis.call('ZREM', key, lease)
    elseif delta ~= 0 and kind == 'r' then
      local tat = tat_of(key) + delta * param / limit
      if tat > now then
        redis.call('SET', key, tostring(tat), 'PX', math.ceil(tat - now) + 1)
      else
        redis.call('DEL', key)
      end
    elseif delta ~= 0 and param > now then
      redis.call('INCRBY', key, delta)
      redis.call('PEXPIRE', key, math.ceil(param - now) + keep)
    end
  end
  k = k + rules
end
local out = {}
for a = 2 + settlements, #ARGV do
  local spec, rules = words(a)
  local lease = spec[1]
  local worst, worst_wait = 0, 0
  local tats = {}
  for i = 1, rules do
    local key, at = KEYS[k + i], 1 + (i - 1) * 4
    local kind, limit = spec[at + 1], tonumber(spec[at + 2])
    local cost, param = tonumber(spec[at + 3]), tonumber(spec[at + 4])
    local wait = 0
    if kind == 'r' then
      tats[i] = tat_of(key) + cost * param / limit
      wait = tats[i] - param - now
    elseif kind == 'c' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      if redis.call('ZCARD', key) >= limit then wait = full_wait end
    else
      local spent = tonumber(redis.call('GET', key) or '0')
      if spent >= limit then wait = param - now end
    end
    if wait > 0 and wait > worst_wait then worst, worst_wait = i, wait end
  end
  if worst == 0 then
    for i = 1, rules do
      local key, at = KEYS[k + i], 1 + (i - 1) * 4
      local kind, cost, param = spec[at + 1], tonumber(spec[at + 3]), tonumber(spec[at + 4])
      if kind == 'r' then
        redis.call('SET', key, tostring(tats[i]), 'PX', math.ceil(tats[i] - now) + 1)
      elseif kind == 'c' then
        redis.call('ZADD', key, now + ttl, lease)
        redis.call('PEXPIRE', key, ttl)
      else
        redis.call('INCRBY', key, cost)
        redis.call('PEXPIRE', key, math.ceil(param - now) + keep)
      end
    end
    out[#out + 1] = 0
    out[#out + 1] = ''
  else
    out[#out + 1] = worst
    out[#out + 1] = tostring(worst_wait)
  end
  k = k + rules
end
return out
"""


def _rule_words(rule: Rule, cost: int) -> str:
    if isinstance(rule, RateRule):
        return f"r {rule.limit} {cost} {rule.period_s * 1000.0!r}"
    if isinstance(rule, ConcurrencyRule):
        return f"c {rule.limit} 0 0"
    return f"q {rule.limit} {cost} {rule.resets_at * 1000.0!r}"


def _cost(rule: Rule) -> int:
    return 0 if isinstance(rule, ConcurrencyRule) else rule.cost


def _refunds(rules: Sequence[Rule]) -> list[int]:
    """The deltas that settle a lease as if it never ran: every reservation given back."""
    return [-_cost(rule) for rule in rules]


_Batched: TypeAlias = tuple[list[str], str, float]  # one request's (rule keys, "lease words...", now) in a call
_Answer: TypeAlias = tuple[int, bytes]  # (0 or the refusing rule's index, its wait in ms)


class RedisLimiter:
    """`Limiter` over one Redis; raises `RedisError` when Redis fails (`FailoverLimiter` decides what then).

    Every decision is one script call (`_CALL`), and calls are batched (``integration_api.batching``), one in
    flight at a time on one connection:

    - an acquisition is on its request's path: one call acquires for every request that arrived while the
      previous call was in flight (a lone request is sent at once);
    - a settlement is off it (`Policy.settle`) and does not get a call of its own: it rides with the next
      acquisition, applied before it in the same script, or goes after `SETTLE_DELAY_S` when no acquisition
      came. So a request costs a share of one round trip, not two; a finished request's slot and refund count
      for the next request's decision as before (they are applied first), and at most `SETTLE_DELAY_S` later for
      another replica's.

    A request cancelled while its acquisition is in flight has what it was granted given back when the answer
    comes.
    """

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._prefix = f"{prefix}rl:"
        # One connection: the batcher has at most one call in flight, and a client of one connection skips the
        # pool's checkout per command (~60 µs of CPU and ~250 µs of wall time per call here, measured against a
        # pooled client, 2026-12-01).
        self._client = redis_asyncio.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S, single_connection_client=True
        )
        self._script = self._client.register_script(_CALL)
        self._head = f"{LEASE_TTL_S * 1000.0!r} {CONCURRENCY_RETRY_AFTER_S * 1000.0!r} {QUOTA_KEEP_MS}"  # after now
        self._calls: Batcher[_Batched | None, _Answer | None] = Batcher(self._call)  # None: settlements only
        self._settlements: list[tuple[_Batched, asyncio.Future[None]]] = []  # waiting for the next call
        self._flush: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[_Answer | None]] = set()  # settlement-only calls (`_flush_settlements`)

    async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        """Acquire in the next call (at once when none is in flight)."""
        words = " ".join([_rule_words(rule, _cost(rule)) for rule in rules])
        prefix = self._prefix
        item = ([prefix + rule.key for rule in rules], f"{lease} {words}", now)

        def abandoned(answer: _Answer | None) -> None:  # admitted for a request that went away: undo it
            if answer is not None and answer[0] == 0:
                self._queue_settlement(rules, _refunds(rules), lease, now)

        answer = await self._calls.submit(item, abandoned)
        assert answer is not None
        index, wait_ms = answer
        if index == 0:
            return None
        return Refusal(rules[index - 1], float(wait_ms) / 1000.0)

    async def settle(self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float) -> None:
        """Settle with the next call; returns (or raises that call's `RedisError`) once it is written."""
        await asyncio.shield(self._queue_settlement(rules, deltas, lease, now))

    def _queue_settlement(
        self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float
    ) -> asyncio.Future[None]:
        """Put a settlement on the next call (an acquisition's, or its own after `SETTLE_DELAY_S`)."""
        prefix = self._prefix
        words = " ".join([_rule_words(rule, delta) for rule, delta in zip(rules, deltas, strict=True)])
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._settlements.append((([prefix + rule.key for rule in rules], f"{lease} {words}", now), done))
        if self._flush is None:
            self._flush = loop.call_later(SETTLE_DELAY_S, self._flush_settlements)
        return done

    def _flush_settlements(self) -> None:
        """No acquisition came to carry the waiting settlements: a call of their own (its failure reaches each
        settlement's waiter; `FailoverLimiter` counts it)."""
        self._flush = None
        if self._settlements:
            task = asyncio.ensure_future(self._calls.submit(None))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _call(self, items: Sequence[_Batched | None]) -> list[_Answer | None]:
        settlements, self._settlements = self._settlements, []
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        acquisitions = [item for item in items if item is not None]
        batched = [settlement for settlement, _ in settlements] + acquisitions
        keys = [key for rule_keys, _, _ in batched for key in rule_keys]
        now = max(now for _, _, now in batched) if batched else 0.0  # one clock for the call: the latest caller's
        head = f"{now * 1000.0!r} {self._head} {len(settlements)}"
        try:
            flat = await self._script(keys=keys, args=[head, *(words for _, words, _ in batched)]) if batched else []
        except Exception as exc:
            for _, done in settlements:
                done.set_exception(exc)
                done.exception()  # retrieved: a settler cancelled meanwhile logs nothing
            raise
        except BaseException:  # cancelled (the loop is closing): nobody waits forever
            for _, done in settlements:
                done.cancel()
            raise
        for _, done in settlements:
            done.set_result(None)
        answers = iter([(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)])
        return [None if item is None else next(answers) for item in items]

    async def aclose(self) -> None:
        await self._calls.aclose()  # the acquisitions in flight, and what they were granted for nobody queued
        if self._settlements:
            self._flush_settlements()  # now, not after the delay
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        if self._flush is not None:
            self._flush.cancel()
        await self._client.aclose()


class FailoverLimiter:
    """The Redis limiter, with fail-open (local limits) or fail-closed (UNAVAILABLE) while Redis is unreachable.

    A lease is settled by the limiter that admitted it (`settle` falls back too: Redis' own lease expiry and
    GCRA's catch-up absorb what a settle lost during an outage).
    """

    def __init__(
        self,
        shared: Limiter,
        mode: FailMode,
        local: LocalLimiter | None = None,
    ) -> None:
        self.shared = shared
        self.local = local or LocalLimiter()
        self.mode: FailMode = mode
        self._down_since: float | None = None
        self._next_try = -math.inf
        self.outages = 0  # times Redis became unreachable
        self.errors = 0  # Redis calls that failed
        self.fallback_decisions = 0  # acquisitions decided locally (fail open) or refused (fail closed)
        self._local_leases: set[str] = set()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def _failed(self, error: RedisError, now: float) -> None:
        self.errors += 1
        self._next_try = now + RETRY_INTERVAL_S
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            action = "limiting with this process's own counters" if self.mode == "open" else "refusing requests"
            logger.error(
                "rate limits: Redis is unreachable (%s: %s); %s (rate_limit_fail_mode=%s) until it is back",
                type(error).__name__,
                error,
                action,
                self.mode,
            )

    def _recovered(self, now: float) -> None:
        if self._down_since is not None:
            logger.warning(
                "rate limits: Redis is reachable again after %.1f s; limits are shared again", now - self._down_since
            )
            self._down_since = None

    def _fallback(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        self.fallback_decisions += 1
        if self.mode == "closed":
            raise Unavailable(
                "rate limits cannot be checked: the limit store (Redis) is unreachable and"
                " rate_limit_fail_mode is closed",
                retry_after=RETRY_INTERVAL_S,
            )
        refusal = self.local.acquire_now(rules, lease, now)
        if refusal is None:
            self._local_leases.add(lease)
        return refusal

    async def acquire(self, rules: Sequence[Rule], lease: str, now: float) -> Refusal | None:
        if self.down and now < self._next_try:
            return self._fallback(rules, lease, now)
        try:
            refusal = await self.shared.acquire(rules, lease, now)
        except RedisError as error:
            self._failed(error, now)
            return self._fallback(rules, lease, now)
        self._recovered(now)
        return refusal

    async def settle(self, rules: Sequence[Rule], deltas: Sequence[int], lease: str, now: float) -> None:
        if lease in self._local_leases:
            self._local_leases.discard(lease)
            self.local.settle_now(rules, deltas, lease, now)
            return
        try:
            await self.shared.settle(rules, deltas, lease, now)
        except RedisError as error:
            self._failed(error, now)

    async def aclose(self) -> None:
        await self.shared.aclose()
