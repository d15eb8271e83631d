"""Circuit breakers, one per deployment (provider + base URL + credential digest), and the hedge budget.

A breaker is closed (every attempt goes through), open (its target is skipped, without a network call, for
`open_s`), or half-open (after `open_s`: up to `half_open_probes` attempts go through; a success closes it again,
a failure opens it for another `open_s`). It opens after `failures` consecutive failures, or when at least
`min_requests` attempts in the last `window_s` failed at a share of `error_rate` or more.

Only failures that say something about the deployment count: retryable ones (429, 5xx, 529, timeouts, lost
connections). A request the deployment refused as invalid is the caller's problem, and an attempt cancelled
(a hedge that lost, a client that went away) is neither a success nor a failure.

State is per process: a breaker must react within one or two failed requests, and sharing it (Redis) would put a
network round trip in front of every attempt to save each replica those same few failures; every replica
learns of an outage on its own just as fast. Time comes from an injected clock (tests use a fake one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum

from integration_api.routing.config import BreakerConfig

Clock = Callable[[], float]
_BUCKETS = 10  # a sliding window is kept as this many counters, not one entry per attempt


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Window:
    """Two counts (attempts and failures; for the hedge budget, requests and hedges) over the last `window_s`."""

    def __init__(self, window_s: float, clock: Clock) -> None:
        self._width = window_s / _BUCKETS
        self._clock = clock
        self._buckets: deque[list[float]] = deque()  # [bucket start, attempts, failures]

    def _current(self) -> list[float]:
        now = self._clock()
        horizon = now - self._width * _BUCKETS
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()
        if not self._buckets or now - self._buckets[-1][0] >= self._width:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def add(self, attempts: int, failures: int) -> None:
        bucket = self._current()
        bucket[1] += attempts
        bucket[2] += failures

    def totals(self) -> tuple[int, int]:
        self._current()
        return int(sum(b[1] for b in self._buckets)), int(sum(b[2] for b in self._buckets))

    def clear(self) -> None:
        self._buckets.clear()


class CircuitBreaker:
    """One deployment's breaker. `allow()` before an attempt; then exactly one of `success`, `failure`, `abandon`."""

    def __init__(self, config: BreakerConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0  # half-open attempts in flight
        self._window = _Window(config.window_s, clock)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.config.open_s:
            return BreakerState.HALF_OPEN  # what the next `allow` will find
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(self._opened_at + self.config.open_s - self._clock(), 0.0)

    def allow(self) -> bool | None:
        """None: skip the target. Otherwise go ahead; True means this attempt is a half-open probe."""
        if self.state is BreakerState.HALF_OPEN and self._state is BreakerState.OPEN:
            self._state, self._probes = BreakerState.HALF_OPEN, 0
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        return None

    def success(self, probe: bool) -> None:
        if probe:
            self._close()
        elif self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.add(1, 0)

    def failure(self, probe: bool) -> None:
        if probe or self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self._state is not BreakerState.CLOSED:
            return  # an attempt started before the breaker opened: it is already open
        self._consecutive += 1
        self._window.add(1, 1)
        attempts, failures = self._window.totals()
        config = self.config
        if self._consecutive >= config.failures or (
            attempts >= config.min_requests and failures >= config.error_rate * attempts
        ):
            self._open()

    def abandon(self, probe: bool) -> None:
        """The attempt was cancelled before it said anything: it frees its probe slot, nothing more."""
        if probe and self._state is BreakerState.HALF_OPEN:
            self._probes = max(self._probes - 1, 0)

    def _open(self) -> None:
        self._state, self._opened_at, self._probes = BreakerState.OPEN, self._clock(), 0

    def _close(self) -> None:
        self._state, self._consecutive, self._probes = BreakerState.CLOSED, 0, 0
        self._window.clear()


class HedgeBudget:
    """At most `percent` hedges per 100 requests of a route over the last `window_s`."""

    def __init__(self, percent: float, window_s: float, clock: Clock) -> None:
        self._share = percent / 100.0
        self._window = _Window(window_s, clock)

    def request(self) -> None:
        """Count one request of the route (hedged or not)."""
        self._window.add(1, 0)

    def try_hedge(self) -> bool:
        """Spend one hedge if the budget has room for it."""
        requests, hedges = self._window.totals()
        if hedges + 1 > self._share * requests:
            return False
        self._window.add(0, 1)
        return True
