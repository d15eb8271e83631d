"""Prometheus metrics: /metrics on a real gateway's HTTP port after known requests, read from the same counters as
GetServerStats; the model allow-list; refusals by the policy as rate limited; exact histogram buckets."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth.principal import KeyScope
from integration_api.observability.metrics import (
    METRICS,
    CountersView,
    MetricsExporter,
    families,
    markdown_table,
)
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from integration_api.sessions.stats import BUCKET_BOUNDS_NS, ProviderCounters, ServerStats
from integration_api.settings import Settings
from providers.clients import ClientCache
from tests.conftest import make_settings
from tests.grpc_helpers import chat_request
from tests.http.conftest import HttpGateway, start_http_gateway, stop_http_gateway

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(provider: str = "simulated", model: str = "other", rpc: str = "StreamChat") -> dict[str, str]:
    return {"provider": provider, "model": model, "rpc": rpc}


async def scrape(gateway: HttpGateway) -> tuple[str, Samples]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{gateway.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


@pytest.fixture
def http_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, metrics_model_allowlist=("echo",))


@pytest.fixture
async def gateway(http_settings: Settings) -> AsyncIterator[HttpGateway]:
    running = await start_http_gateway(http_settings)
    yield running
    await stop_http_gateway(running)


async def test_metrics_after_known_requests(gateway: HttpGateway) -> None:
    stream = gateway.running.open_stream()
    await stream.send(
        chat_request("ok1", "one two three", provider="simulated", name="echo"),
        chat_request("ok2", "four five", provider="simulated", name="some-unlisted-model"),
        chat_request("bad", "x", provider="simulated", simulated_error=400, name="echo"),
    )
    collected = await stream.read_until_done(["ok1", "ok2", "bad"])
    assert collected.terminal("ok1").success and not collected.terminal("bad").success

    text, samples = await scrape(gateway)
    echo, other = series(model="echo"), series(model="other")
    assert value(samples, "integration_api_requests_total", **echo, code="200") == 1
    assert value(samples, "integration_api_requests_total", **echo, code="400") == 1
    assert value(samples, "integration_api_requests_total", **other, code="200") == 1
    assert 'model="some-unlisted-model"' not in text  # bounded: not on the allow-list, so "other"
    # The simulator reports one output token per word, and the words of the prompt as input.
    assert value(samples, "integration_api_tokens_total", **echo, direction="output") == 3
    assert value(samples, "integration_api_tokens_total", **other, direction="output") == 2
    assert value(samples, "integration_api_upstream_attempts_total", **echo) == 2  # 400 is not retried
    assert value(samples, "integration_api_request_duration_seconds_count", **echo) == 2
    assert value(samples, "integration_api_time_to_first_token_seconds_count", **echo) == 1  # "bad" had no output
    assert value(samples, "integration_api_time_per_output_chunk_seconds_count", **other) == 1
    assert value(samples, "integration_api_request_duration_seconds_bucket", **echo, le="+Inf") == 2
    assert value(samples, "integration_api_inflight_requests", **echo) == 0
    assert value(samples, "integration_api_active_streams") == 1  # the stream is still open
    assert value(samples, "integration_api_rate_limited_total", **echo) == 0

    # GetServerStats reads the same counters.
    sessions = pb_grpc.SessionServiceStub(gateway.running.channel)
    stats = await sessions.GetServerStats(pb.GetServerStatsRequest(), metadata=gateway.running.metadata)
    total = sum(v for (name, _), v in samples.items() if name == "integration_api_requests_total")
    assert stats.requestsTotal == total == 3 and stats.requestsFailed == 1

    await stream.call.done_writing()
    await stream.read_to_end()
    _, after = await scrape(gateway)
    assert value(after, "integration_api_active_streams") == 0


async def test_every_metric_of_the_table_is_exported(gateway: HttpGateway) -> None:
    stream = gateway.running.open_stream()
    await stream.send(chat_request("ok", "a b", provider="simulated"))
    await stream.read_until_done(["ok"])
    text, _ = await scrape(gateway)
    exported = {family.name for family in text_string_to_metric_families(text)}
    # The parser drops a counter's _total suffix from the family name.
    assert exported == {spec.name.removesuffix("_total") for spec in METRICS}
    for spec in METRICS:
        assert f"# TYPE {spec.name} {spec.kind}" in text


async def test_a_policy_refusal_counts_as_rate_limited(gateway: HttpGateway) -> None:
    key, _ = gateway.running.store.create("limited", "org-1", "proj-1", scope=KeyScope(rpm=1))
    stream = gateway.running.open_stream((("x-api-key", key),))
    await stream.send(chat_request("first", "a b", provider="simulated"))
    await stream.read_until_done(["first"])
    await stream.send(chat_request("second", "a b", provider="simulated"))
    collected = await stream.read_until_done(["second"])
    assert collected.terminal("second").code == 429
    _, samples = await scrape(gateway)
    assert value(samples, "integration_api_rate_limited_total", **series(model="")) == 1
    assert value(samples, "integration_api_requests_total", **series(model=""), code="429") == 1
    assert value(samples, "integration_api_upstream_attempts_total", **series(model="")) == 1  # only the first


async def test_an_upstream_429_after_retries_is_not_rate_limited(gateway: HttpGateway) -> None:
    stream = gateway.running.open_stream()
    await stream.send(chat_request("busy", "a", provider="simulated", simulated_error=429))
    collected = await stream.read_until_done(["busy"])
    assert collected.terminal("busy").code == 429
    _, samples = await scrape(gateway)
    assert value(samples, "integration_api_requests_total", **series(model=""), code="429") == 1
    assert value(samples, "integration_api_rate_limited_total", **series(model="")) == 0
    assert value(samples, "integration_api_upstream_attempts_total", **series(model="")) == 3  # retried


def test_histogram_buckets_are_exact_at_the_exported_bounds() -> None:
    stats = ServerStats()
    counters = stats.counters("p", "m", "Chat")
    bound = next(b for b in BUCKET_BOUNDS_NS if b >= 10**6)  # the stats bucket bound just above 1 ms
    for ns in (bound, bound + 1, 5 * 10**9):
        counters.total_time.observe(ns)
    (family,) = [
        f for f in families(CountersView({("p", "m", "Chat"): counters})) if f.name.endswith("duration_seconds")
    ]
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets[repr(bound / 1e9)] == 1  # `bound` itself is in, `bound + 1` is not
    assert buckets["+Inf"] == 3
    below_5s = max((le for le in buckets if le != "+Inf" and float(le) < 5), key=float)
    assert buckets[below_5s] == 2


async def test_client_cache_evictions_are_exported() -> None:
    cache = ClientCache(max_size=1)
    cache.get_or_create("a", object)
    cache.get_or_create("b", object)  # pushes "a" out
    cache.get_or_create("c", object)  # and "b"
    exporter = MetricsExporter(ServerStats(), lambda: cache.evictions)
    samples = parse(exporter.render().decode())
    assert value(samples, "integration_api_client_cache_evictions_total") == 2
    await cache.aclose()


def test_the_model_allowlist_bounds_the_series() -> None:
    stats = ServerStats(model_allowlist=("gpt-4o",))
    for model in ("gpt-4o", "x1", "x2", "x3"):
        stats.counters("openai", model, "Chat").started()
    assert set(stats.series) == {("openai", "gpt-4o", "Chat"), ("openai", "other", "Chat")}
    assert stats.counters("openai", "x9", "Chat") is stats.counters("openai", "x1", "Chat")
    everything = ServerStats(model_allowlist=("*",))
    assert everything.model_label("anything") == "anything"
    assert isinstance(everything.counters("a"), ProviderCounters)


def test_readme_and_dashboard_follow_the_table() -> None:
    root = Path(__file__).resolve().parents[2]
    assert markdown_table() in (root / "README.md").read_text()
    dashboard = json.loads((root / "deploy/grafana/dashboard.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = set(re.findall(r"integration_api_[a-z_]+", exprs))
    names = {spec.name for spec in METRICS}
    histograms = {spec.name for spec in METRICS if spec.kind == "histogram"}
    assert used <= names | {f"{name}_bucket" for name in histograms}
    assert {"integration_api_requests_total", "integration_api_rate_limited_total"} <= used
