"""The server's counters, in one place: what GetServerStats reports and the Prometheus exporter reads.

`ServerStats` is fed by `StatsLayer` (in the request pipeline outside the policy layer: every request that reaches a
provider's pipeline, of every RPC, refused or not) and by the gateway's stream open/close hooks. Requests are counted
per series (provider, model, rpc): a model outside `model_allowlist` counts as ``other``, so the number of series stays
bounded whatever model names clients send (``integration_api.observability.metrics`` exports every series;
GetServerStats sums them per provider). The hot path costs a few integer adds per
request and one bisect per latency observed: latencies go into fixed-bucket histograms (buckets 10% apart from
50 µs to 10 minutes), so percentiles take no memory per request and are within 10% of the true value.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

from integration_api.context import RequestContext
from integration_api.errors import GatewayError
from providers.base import ChatOutcome, ObservingLayer, Provider
from providers.types import (
    ChatCall,
    Usage,
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
OTHER_MODEL = "other"  # the model label of every model outside the allow-list
CANCELLED_CODE = 499  # a request cancelled, or abandoned by its consumer, before it finished
RATE_LIMITED_CODE = 429


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
    """One series' requests (a provider, a model label, an rpc) since the process started."""

    __slots__ = (
        "attempts",
        "codes",
        "failed",
        "in_flight",
        "input_tokens",
        "output_tokens",
        "rate_limited",
        "requests",
        "succeeded",
        "time_per_output_chunk",
        "time_to_first_token",
        "total_time",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.succeeded = 0
        self.failed = 0  # failed or cancelled
        self.in_flight = 0
        self.time_to_first_token = Histogram()
        self.total_time = Histogram()
        self.codes: dict[int, int] = {}  # ended requests per HTTP-like code (200, 429, 499...)
        self.input_tokens = 0
        self.output_tokens = 0
        self.attempts = 0  # upstream attempts (RequestStats.attempts, counted by the resilience layer)
        self.rate_limited = 0  # refused with 429 before any upstream attempt: the gateway's own limits
        self.time_per_output_chunk = Histogram()  # per request: (last chunk - first chunk) / (chunks - 1)

    def started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def ended(self, succeeded: bool, started_ns: int, first_output_ns: int = 0, code: int | None = None) -> None:
        self.in_flight -= 1
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
        code = code if code is not None else (200 if succeeded else 500)
        self.codes[code] = self.codes.get(code, 0) + 1
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

    def __init__(self, clock: Callable[[], float] = time.monotonic, model_allowlist: Collection[str] = ()) -> None:
        self._clock = clock
        self.started_at = clock()
        self.active_streams = 0
        self.streams_opened = 0
        self.sessions_created = 0
        self.model_allowlist = frozenset(model_allowlist)  # "*": every model keeps its name (unbounded)
        self.series: dict[tuple[str, str, str], ProviderCounters] = {}  # (provider, model label, rpc)

    def model_label(self, model: str) -> str:
        if not model or model in self.model_allowlist or "*" in self.model_allowlist:
            return model
        return OTHER_MODEL

    def counters(self, provider: str, model: str = "", rpc: str = "") -> ProviderCounters:
        key = (provider, self.model_label(model), rpc)
        counters = self.series.get(key)
        if counters is None:
            counters = self.series[key] = ProviderCounters()
        return counters

    def provider(self, name: str) -> ProviderCounters:
        """The counters of requests of provider `name` that name no model or rpc."""
        return self.counters(name)

    def providers(self) -> dict[str, list[ProviderCounters]]:
        """Every series, grouped by provider."""
        grouped: dict[str, list[ProviderCounters]] = {}
        for (provider, _model, _rpc), counters in self.series.items():
            grouped.setdefault(provider, []).append(counters)
        return grouped

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
        for name, series in sorted(self.providers().items()):
            provider_ttft, provider_total = Histogram(), Histogram()
            for counters in series:
                provider_ttft.merge(counters.time_to_first_token)
                provider_total.merge(counters.total_time)
            ttft.merge(provider_ttft)
            total.merge(provider_total)
            providers.append(
                ProviderSnapshot(
                    name,
                    sum(c.requests for c in series),
                    sum(c.succeeded for c in series),
                    sum(c.failed for c in series),
                    sum(c.in_flight for c in series),
                    provider_ttft.summary(),
                    provider_total.summary(),
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


def _code(error: BaseException | None) -> int:
    """The HTTP-like code a request ended with, from what ended it (None: it succeeded)."""
    if error is None:
        return 200
    if isinstance(error, GatewayError):
        return error.http_status
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return CANCELLED_CODE
    return 500


class StatsLayer(ObservingLayer):
    """Counts each request of the pipeline into `stats`: started, ended with which code, time to first event,
    total, tokens, upstream attempts, time per output chunk.

    A chat succeeded when its stream ran to its end after ChatFinished; anything else (an error, a cancellation,
    the consumer closing the stream early) is a failure.
    """

    def __init__(self, inner: Provider, context: RequestContext, stats: ServerStats) -> None:
        super().__init__(inner, context)
        self._counters = stats.counters(context.provider, context.model, context.rpc)

    def _ended(self, error: BaseException | None, first_ns: int = 0, usage: Usage | None = None) -> None:
        counters = self._counters
        code = _code(error)
        counters.ended(error is None, self.context.started_ns, first_ns, code)
        attempts = self.context.stats.attempts
        counters.attempts += attempts
        if code == RATE_LIMITED_CODE and not attempts:
            counters.rate_limited += 1
        if usage is not None:
            counters.input_tokens += usage.input_tokens
            counters.output_tokens += usage.output_tokens

    async def opened(self, call: ChatCall) -> None:
        self._counters.started()

    def closed(self, call: ChatCall, outcome: ChatOutcome) -> None:
        error = outcome.error
        if error is None and not outcome.finished:
            error = RuntimeError("the stream ended without finishing the response")  # counted as a 500
        if outcome.chunks > 1:
            per_chunk = (outcome.last_chunk_ns - outcome.first_chunk_ns) // (outcome.chunks - 1)
            self._counters.time_per_output_chunk.observe(per_chunk)
        self._ended(error, outcome.first_ns, outcome.usage)

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        self._counters.started()
        error: BaseException | None = None
        usage: Usage | None = None
        try:
            result = await operation()
            usage = usage_of(result) if usage_of is not None else None
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._ended(error, usage=usage)
