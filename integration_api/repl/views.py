"""What the REPL's blocks say: sessions, the gateway's stats, the client's stats and a reply's summary as text.

Pure functions from the client's typed results to rows of text; `render` decides how they look.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from integration_api.client import ChatResult, LatencyStats, ServerStats, SessionInfo
from integration_api.repl.render import Rows
from integration_api.repl.stats import ClientStats


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _ago(timestamp: float, now: float) -> str:
    return f"{duration(max(0.0, now - timestamp))} ago" if timestamp else "-"


def _in(timestamp: float, now: float) -> str:
    return f"in {duration(max(0.0, timestamp - now))}" if timestamp else "-"


def reply_summary(result: ChatResult, elapsed_s: float) -> str:
    usage = result.usage
    first = result.timings.first_token_ms
    parts = [result.finish_reason or "done", f"{usage.input_tokens} tokens in, {usage.output_tokens} out"]
    if first is not None:
        parts.append(f"first token {first:.0f} ms")
    parts.append(duration(elapsed_s))
    return "; ".join(parts)


def session_rows(info: SessionInfo, *, model: str, now: float | None = None) -> Rows:
    """`/info`: the session as the gateway keeps it; `model` is what this REPL's requests ask for."""
    now = time.time() if now is None else now
    requested = model or info.model or "(provider default)"
    if info.model and model and model != info.model:
        requested += f" (session default {info.model})"
    parameters = ", ".join(f"{name}={value}" for name, value in sorted(info.parameters.items()) if name != "name")
    return [
        ("id", info.id),
        ("provider", info.provider),
        ("model", requested),
        ("system prompt", info.system_prompt or "(none)"),
        ("parameters", parameters or "(none)"),
        ("messages", str(info.message_count)),
        ("requests", str(info.request_count)),
        ("tokens", f"{info.input_tokens} in, {info.output_tokens} out"),
        ("trimmed", f"{info.trimmed_messages} messages"),
        ("created", _ago(info.created_at, now)),
        ("last used", _ago(info.last_used_at, now)),
        ("expires", _in(info.expires_at, now)),
    ]


def sessions_table(sessions: Sequence[SessionInfo], current: str | None) -> tuple[list[str], list[list[str]]]:
    """`/sessions`: one row per session, the current one marked with ``*``."""
    now = time.time()
    headers = ["", "id", "provider", "model", "messages", "last used"]
    rows = [
        ["*" if info.id == current else "", info.id, info.provider, info.model or "-", str(info.message_count),
         _ago(info.last_used_at, now)]
        for info in sessions
    ]  # fmt: skip
    return headers, rows


def _latency(latency: LatencyStats) -> str:
    if not latency.count:
        return "-"
    return f"avg {latency.average_ms:.1f} ms, p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms"


def server_rows(stats: ServerStats) -> Rows:
    """`/server`: GetServerStats, overall then per provider."""
    rows = [
        ("uptime", duration(stats.uptime_s)),
        ("requests", f"{stats.requests_total} ({stats.requests_succeeded} ok, {stats.requests_failed} failed)"),
        ("active streams", str(stats.active_streams)),
        ("in flight", str(stats.in_flight_requests)),
        ("sessions", f"{stats.sessions_active} active, {stats.sessions_created} created"),
        ("first token", _latency(stats.time_to_first_token)),
        ("total time", _latency(stats.total_time)),
    ]
    for provider in stats.providers:
        rows.append(
            (
                provider.provider,
                f"{provider.requests_total} requests ({provider.requests_succeeded} ok, {provider.requests_failed} "
                f"failed), total {_latency(provider.total_time)}",
            )
        )
    return rows


def client_rows(stats: ClientStats) -> Rows:
    """`/stats`: this REPL's own counters."""
    average = stats.average_response_s
    return [
        ("duration", duration(stats.duration_s)),
        ("messages sent", str(stats.messages_sent)),
        ("streams", f"{stats.streams_ok} ok, {stats.streams_failed} failed, {stats.streams_cancelled} cancelled"),
        ("chunks", str(stats.chunks)),
        ("avg response", duration(average) if average is not None else "-"),
        ("reconnections", str(stats.reconnections)),
    ]
