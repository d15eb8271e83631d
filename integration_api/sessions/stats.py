"""The server's counters, in one place: what GetServerStats reports and a metrics exporter can read later.

`ServerStats` is fed by `StatsLayer` (the outermost layer of the request pipeline: every request that reaches a
provider, of every RPC) and by the gateway's stream open/close hooks. The hot path costs a few integer adds per
request and one bisect per latency observed: latencies go into fixed-bucket histograms (buckets 10% apart from
50 µs to 10 minutes), so percentiles take no memory per request and are within 10% of the true value.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from integration_api.context import RequestContext
from providers.base import ChatStream, Provider, ProviderLayer
from providers.types import (
    ChatCall,
    ChatFinished,
    EmbeddingCall,
    EmbeddingResult,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
)

T = TypeVar("T")
_GROWTH = 1.1
_FIRST_BOUND_NS = 50_000
_LAST_BOUND_NS = 600 * 10**9


def _bounds() -> tuple[int, ...]:
    bounds = [_FIRST_BOUND_NS]
    while bounds[-1] < _LAST_BOUND_NS:
        bounds.append(int(bounds[-1] * _GROWTH) + 1)
    return tuple(bounds)


BUCKET_BOUNDS_NS = _bounds()  # upper bound of each bucket; one more bucket holds everything above the last


@dataclass(frozen=True, slots=True)
class Latency:
    """A latency distribution, in milliseconds (0 when nothing was observed)."""

    count: int = 0
    average_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0


class Histogram:
    """Counts of durations per fixed bucket."""

    __slots__ = ("count", "counts", "total_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKET_BOUNDS_NS) + 1)
        self.count = 0
        self.total_ns = 0

    def observe(self, ns: int) -> None:
        self.counts[bisect.bisect_left(BUCKET_BOUNDS_NS, ns)] += 1
        self.count += 1
        self.total_ns += ns

    def merge(self, other: Histogram) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.count += other.count
        self.total_ns += other.total_ns

    def quantile_ms(self, quantile: float) -> float:
        """The upper bound of the bucket holding the `quantile` observation (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, round(quantile * self.count))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                bound = BUCKET_BOUNDS_NS[min(index, len(BUCKET_BOUNDS_NS) - 1)]
                return bound / 1e6
        raise AssertionError("unreachable: the counts add up to count")

    def summary(self) -> Latency:
        if not self.count:
            return Latency()
        return Latency(self.count, self.total_ns / self.count / 1e6, self.quantile_ms(0.5), self.quantile_ms(0.95))


class ProviderCounters:
    """One provider's requests since the process started."""

    __slots__ = ("failed", "in_flight", "requests", "succeeded", "time_to_first_token", "total_time")

    def __init__(self) -> None:
        self.requests = 0
        self.succeeded = 0
        self.failed = 0  # failed or cancelled
        self.in_flight = 0
        self.time_to_first_token = Histogram()
        self.total_time = Histogram()

    def started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def ended(self, succeeded: bool, started_ns: int, first_output_ns: int = 0) -> None:
        self.in_flight -= 1
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
        now = time.perf_counter_ns()
        self.total_time.observe(now - started_ns)
        if first_output_ns:
            self.time_to_first_token.observe(first_output_ns - started_ns)


@dataclass(frozen=True, slots=True)
class ProviderSnapshot:
    provider: str
    requests: int
    succeeded: int
    failed: int
    in_flight: int
    time_to_first_token: Latency
    total_time: Latency


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Every counter at one instant; the totals are the sums over `providers`."""

    uptime_s: float
    requests: int
    succeeded: int
    failed: int
    in_flight: int
    active_streams: int
    sessions_created: int
    time_to_first_token: Latency
    total_time: Latency
    providers: tuple[ProviderSnapshot, ...]


class ServerStats:
    """The counters of one server process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self.active_streams = 0
        self.streams_opened = 0
        self.sessions_created = 0
        self.providers: dict[str, ProviderCounters] = {}

    def provider(self, name: str) -> ProviderCounters:
        counters = self.providers.get(name)
        if counters is None:
            counters = self.providers[name] = ProviderCounters()
        return counters

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """Counts one open StreamChat stream for as long as the block runs."""
        self.active_streams += 1
        self.streams_opened += 1
        try:
            yield
        finally:
            self.active_streams -= 1

    def snapshot(self) -> StatsSnapshot:
        providers = []
        ttft, total = Histogram(), Histogram()
        for name, counters in sorted(self.providers.items()):
            ttft.merge(counters.time_to_first_token)
            total.merge(counters.total_time)
            providers.append(
                ProviderSnapshot(
                    name,
                    counters.requests,
                    counters.succeeded,
                    counters.failed,
                    counters.in_flight,
                    counters.time_to_first_token.summary(),
                    counters.total_time.summary(),
                )
            )
        return StatsSnapshot(
            uptime_s=self._clock() - self.started_at,
            requests=sum(p.requests for p in providers),
            succeeded=sum(p.succeeded for p in providers),
            failed=sum(p.failed for p in providers),
            in_flight=sum(p.in_flight for p in providers),
            active_streams=self.active_streams,
            sessions_created=self.sessions_created,
            time_to_first_token=ttft.summary(),
            total_time=total.summary(),
            providers=tuple(providers),
        )


class StatsLayer(ProviderLayer):
    """Counts each request of the pipeline into `stats`: started, succeeded or failed, time to first event, total.

    A chat succeeded when its stream ran to its end after ChatFinished; anything else (an error, a cancellation,
    the consumer closing the stream early) is a failure.
    """

    def __init__(self, inner: Provider, context: RequestContext, stats: ServerStats) -> None:
        super().__init__(inner, context)
        self._counters = stats.provider(context.provider)

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        counters = self._counters
        counters.started()
        first_ns = 0
        finished = succeeded = False
        try:
            async for event in self.inner.stream_chat(call):
                if not first_ns:
                    first_ns = time.perf_counter_ns()
                finished = isinstance(event, ChatFinished)
                yield event
            succeeded = finished
        finally:
            counters.ended(succeeded, self.context.started_ns, first_ns)

    async def _count(self, operation: Callable[[], Awaitable[T]]) -> T:
        counters = self._counters
        counters.started()
        succeeded = False
        try:
            result = await operation()
            succeeded = True
            return result
        finally:
            counters.ended(succeeded, self.context.started_ns)

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        return await self._count(lambda: self.inner.embed(call))

    async def rerank(self, call: RerankCall) -> RerankResult:
        return await self._count(lambda: self.inner.rerank(call))

    async def verify_credential(self) -> str:
        return await self._count(self.inner.verify_credential)

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        return await self._count(lambda: self.inner.moderate(call))
