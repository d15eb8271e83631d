"""The final report of `integration-api bench`: a rich table, or the same figures as JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from integration_api.loadtest._config import LoadConfig

_HINTS = {
    "stream UNAUTHENTICATED": "The gateway refused the streams' credentials: check --api-key or --service-token.",
    "stream UNAVAILABLE": "Streams could not reach the gateway (or it was draining): check --target and --tls.",
    "stream UNIMPLEMENTED": "The target does not serve UnifiedProviderService.StreamChat: is it the gateway?",
}


def describe(config: LoadConfig, processes: int) -> dict[str, Any]:
    """The run's settings, without secrets (no metadata values, no credential values)."""
    return {
        "target": config.target,
        "provider": config.provider,
        "model": config.model,
        "tls": config.tls,
        "streams": config.streams,
        "concurrency_per_stream": config.concurrency_per_stream,
        "requests_per_stream": config.requests_per_stream,
        "prompt_words": config.prompt_words,
        "duration_s": config.effective_duration_s,
        "count": config.count,
        "warmup_s": config.warmup_s,
        "processes": processes,
        "parameters": sorted(config.parameters),
        "credential_fields": sorted(config.credential),
        "auth": [key for key, _ in config.metadata],
    }


def render(summary: dict[str, Any], settings: dict[str, Any]) -> Group:
    """The results table, and the errors by code when there were any."""
    title = (
        f"{settings['target']} · {settings['provider']}{' / ' + settings['model'] if settings['model'] else ''} · "
        f"{settings['streams']} stream(s) x {settings['concurrency_per_stream']} · {summary['elapsed_s']:.1f} s"
    )
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("requests ok", f"{summary['requests']:,}")
    table.add_row("errors", f"{summary['error_count']:,}")
    table.add_row("requests/s", f"{summary['requests_per_s']:,.1f}")
    table.add_row("frames/s", f"{summary['frames_per_s']:,.0f}")
    table.add_row("output tokens/s", f"{summary['tokens_per_s']:,.0f}")
    table.add_row("client CPU µs/request", f"{summary['client_cpu_us_per_request']:,.0f}")
    latency = Table(title="latency (ms)", title_justify="left")
    latency.add_column("")
    for name in ("p50", "p90", "p99", "mean", "max"):
        latency.add_column(name, justify="right")
    for label, key in (("first frame (TTFT)", "first_frame_ms"), ("final frame (total)", "final_frame_ms")):
        figures = summary[key]
        latency.add_row(label, *(f"{figures[name]:.2f}" for name in ("p50", "p90", "p99", "mean", "max")))
    parts: list[RenderableType] = [Text(title, style="bold"), table, latency]
    if summary["errors"]:
        errors = Table(title="errors by code", title_justify="left")
        errors.add_column("code")
        errors.add_column("count", justify="right")
        for code, count in summary["errors"].items():
            errors.add_row(code, f"{count:,}")
        parts.append(errors)
    hints = [_HINTS[code] for code in summary["errors"] if code in _HINTS]
    parts.extend(Text(hint, style="yellow") for hint in hints)
    return Group(*parts)
