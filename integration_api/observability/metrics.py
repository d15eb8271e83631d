"""Prometheus metrics: the one table of what is exported (`METRICS`), rendered at scrape time from the counters.

Nothing here runs per request. The counters are the ones GetServerStats reads (``ServerStats``, fed by the
pipeline's stats layer; the gateway's stream hooks; `ClientCache.evictions`): each scrape reads them and builds
the exposition, so the two can never disagree and the hot path pays only for the stats layer it paid for already.
Series are (provider, model, rpc); the model label is bounded by ``metrics_model_allowlist`` (the rest is
``other``). Histograms are the stats layer's fixed buckets (10% apart), exported at the bounds nearest above
`EXPORT_BOUNDS_S`: each ``le`` is the exact upper bound of a stats bucket, so every count is exact.

With ``serve --workers N`` the exporter adds the counters the other workers published (``worker_metrics``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from integration_api.sessions.stats import BUCKET_BOUNDS_NS, Histogram, ProviderCounters, ServerStats

SeriesKey = tuple[str, str, str]  # provider, model label, rpc
SERIES_LABELS = ("provider", "model", "rpc")
METRICS_PATH = "/metrics"
# Where the exported histogram buckets end (seconds); each becomes the stats bucket bound just above it.
EXPORT_BOUNDS_S: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
EXPORT_BOUNDS_S += (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(slots=True)
class CountersView:
    """Everything the metrics are read from: one process's counters, or several workers' added up."""

    series: dict[SeriesKey, ProviderCounters] = field(default_factory=dict)
    active_streams: int = 0
    client_cache_evictions: int = 0


Kind = Literal["counter", "gauge", "histogram"]
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its name, type, help, labels, and how its samples are read from a `CountersView`.

    Counters and gauges read (label values, value) pairs; histograms read (label values, Histogram of ns) pairs.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    samples: Callable[[CountersView], Iterable[Sample]] | None = None
    histograms: Callable[[CountersView], Iterable[tuple[tuple[str, ...], Histogram]]] | None = None


def _per_series(read: Callable[[ProviderCounters], float]) -> Callable[[CountersView], Iterator[Sample]]:
    def samples(view: CountersView) -> Iterator[Sample]:
        for key, counters in sorted(view.series.items()):
            yield key, read(counters)

    return samples


def _histogram(
    read: Callable[[ProviderCounters], Histogram],
) -> Callable[[CountersView], Iterator[tuple[tuple[str, ...], Histogram]]]:
    def histograms(view: CountersView) -> Iterator[tuple[tuple[str, ...], Histogram]]:
        for key, counters in sorted(view.series.items()):
            yield key, read(counters)

    return histograms


def _requests(view: CountersView) -> Iterator[Sample]:
    for key, counters in sorted(view.series.items()):
        for code, count in sorted(counters.codes.items()):
            yield (*key, str(code)), count


def _tokens(view: CountersView) -> Iterator[Sample]:
    for key, counters in sorted(view.series.items()):
        yield (*key, "input"), counters.input_tokens
        yield (*key, "output"), counters.output_tokens


# The one list of exported metrics: the exporter, the README table and the tests read it.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "integration_api_requests_total",
        "counter",
        "Requests that reached a provider's pipeline, by the code they ended with (200, 429, 499 cancelled...)",
        (*SERIES_LABELS, "code"),
        samples=_requests,
    ),
    MetricSpec(
        "integration_api_request_duration_seconds",
        "histogram",
        "Time from a request's start to its end",
        SERIES_LABELS,
        histograms=_histogram(lambda c: c.total_time),
    ),
    MetricSpec(
        "integration_api_time_to_first_token_seconds",
        "histogram",
        "Time from a request's start to the provider's first event",
        SERIES_LABELS,
        histograms=_histogram(lambda c: c.time_to_first_token),
    ),
    MetricSpec(
        "integration_api_time_per_output_chunk_seconds",
        "histogram",
        "Per streamed request: (last output chunk - first output chunk) / (chunks - 1)",
        SERIES_LABELS,
        histograms=_histogram(lambda c: c.time_per_output_chunk),
    ),
    MetricSpec(
        "integration_api_tokens_total",
        "counter",
        "Tokens the providers reported, by direction (input, output)",
        (*SERIES_LABELS, "direction"),
        samples=_tokens,
    ),
    MetricSpec(
        "integration_api_upstream_attempts_total",
        "counter",
        "Calls made to the providers, retries included",
        SERIES_LABELS,
        samples=_per_series(lambda c: c.attempts),
    ),
    MetricSpec(
        "integration_api_inflight_requests",
        "gauge",
        "Requests in the pipeline now",
        SERIES_LABELS,
        samples=_per_series(lambda c: c.in_flight),
    ),
    MetricSpec(
        "integration_api_active_streams",
        "gauge",
        "StreamChat streams open now",
        (),
        samples=lambda view: [((), view.active_streams)],
    ),
    MetricSpec(
        "integration_api_rate_limited_total",
        "counter",
        "Requests the gateway refused with 429 before any upstream call (rate limits, budgets, session lock)",
        SERIES_LABELS,
        samples=_per_series(lambda c: c.rate_limited),
    ),
    MetricSpec(
        "integration_api_client_cache_evictions_total",
        "counter",
        "SDK clients dropped from the client cache, expired or pushed out by its size bound",
        (),
        samples=lambda view: [((), view.client_cache_evictions)],
    ),
)

_EXPORT_INDEXES = tuple(sorted({bisect.bisect_left(BUCKET_BOUNDS_NS, round(s * 1e9)) for s in EXPORT_BOUNDS_S}))


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative counts at the exported bounds, then +Inf."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    start = 0
    for index in _EXPORT_INDEXES:
        cumulative += sum(histogram.counts[start : index + 1])
        start = index + 1
        buckets.append((repr(BUCKET_BOUNDS_NS[index] / 1e9), cumulative))
    buckets.append(("+Inf", histogram.count))
    return buckets


def families(view: CountersView) -> Iterator[Metric]:
    """The metric families of `view`, in the order of `METRICS`."""
    for spec in METRICS:
        if spec.kind == "histogram":
            assert spec.histograms is not None
            histogram_family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
            for labels, histogram in spec.histograms(view):
                histogram_family.add_metric(list(labels), _buckets(histogram), histogram.total_ns / 1e9)
            yield histogram_family
            continue
        assert spec.samples is not None
        family: CounterMetricFamily | GaugeMetricFamily
        if spec.kind == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        for labels, value in spec.samples(view):
            family.add_metric(list(labels), value)
        yield family


def local_view(stats: ServerStats, client_cache_evictions: int) -> CountersView:
    """This process's counters (the live objects: read, never copied)."""
    return CountersView(dict(stats.series), stats.active_streams, client_cache_evictions)


class MetricsExporter(Collector):
    """Renders the Prometheus exposition of one process's counters, plus the other workers' when `peers` is set."""

    def __init__(
        self,
        stats: ServerStats,
        client_cache_evictions: Callable[[], int],
        peers: Callable[[], Iterable[CountersView]] | None = None,
    ) -> None:
        self._stats = stats
        self._evictions = client_cache_evictions
        self._peers = peers
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def view(self) -> CountersView:
        local = local_view(self._stats, self._evictions())
        if self._peers is None:
            return local
        return merge_views([local, *self._peers()])

    def collect(self) -> Iterable[Metric]:
        return families(self.view())

    def render(self) -> bytes:
        return generate_latest(self.registry)


def merge_views(views: Iterable[CountersView]) -> CountersView:
    """The sum of several views (new counters: the inputs are left alone)."""
    total = CountersView()
    for view in views:
        total.active_streams += view.active_streams
        total.client_cache_evictions += view.client_cache_evictions
        for key, counters in view.series.items():
            into = total.series.get(key)
            if into is None:
                into = total.series[key] = ProviderCounters()
            add_counters(into, counters)
    return total


def add_counters(into: ProviderCounters, counters: ProviderCounters) -> None:
    into.requests += counters.requests
    into.succeeded += counters.succeeded
    into.failed += counters.failed
    into.in_flight += counters.in_flight
    into.input_tokens += counters.input_tokens
    into.output_tokens += counters.output_tokens
    into.attempts += counters.attempts
    into.rate_limited += counters.rate_limited
    for code, count in counters.codes.items():
        into.codes[code] = into.codes.get(code, 0) + count
    into.total_time.merge(counters.total_time)
    into.time_to_first_token.merge(counters.time_to_first_token)
    into.time_per_output_chunk.merge(counters.time_per_output_chunk)


def metrics_routes(exporter: MetricsExporter) -> list[Route]:
    """``GET /metrics``: the Prometheus text exposition (unauthenticated, like every scrape endpoint: expose the
    port only to the scraper's network)."""

    async def metrics(request: Request) -> Response:
        return Response(exporter.render(), media_type=CONTENT_TYPE_LATEST)

    return [Route(METRICS_PATH, metrics, methods=["GET"])]


def markdown_table() -> str:
    """The README's table of metrics, from `METRICS` (a test checks README.md carries exactly this)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        rows.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(rows) + "\n"
