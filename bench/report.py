"""The benchmark's results as markdown and JSON: throughput rows, ratios against their targets, memory.

A run measures its scenarios in rounds (``bench.run --rounds``): every target is computed from each round's rows
alone, so both sides of a ratio were measured minutes apart at most, and the figure reported is the median over
the rounds where it could be computed, with its range; the throughput table shows, per scenario and stream count,
the round with the median requests/s.
"""

from __future__ import annotations

import operator
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bench import interleave
from bench.routing import hedge_overhead_ms

Row = dict[str, Any]
Keyed = dict[tuple[str, int], Row]  # one round's rows by (scenario, streams)


@dataclass(frozen=True)
class Target:
    """A figure computed from one round's rows, compared with its target (`op` is >= or <=).

    `per_round=False`: the figure comes from what is measured once per run (the idle-stream memory), not from the
    rounds, so it is computed once.
    """

    name: str
    compute: Callable[[Keyed, list[Row]], float | None]
    op: str  # ">=", "<=", or "info" (no target: shown for context)
    goal: float = 0.0
    unit: str = "x"
    per_round: bool = True

    def evaluate(self, rows: Keyed, memory: list[Row]) -> dict[str, Any]:
        """The figure of one round against the target."""
        return self.evaluate_rounds([rows], memory)

    def evaluate_rounds(self, rounds: Sequence[Keyed], memory: list[Row]) -> dict[str, Any]:
        """The median of the figure over the rounds where it could be computed (all of them in `values`)."""
        inputs = rounds if self.per_round else [rounds[0] if rounds else {}]
        values = [value for value in (self.compute(rows, memory) for rows in inputs) if value is not None]
        value = float(statistics.median(values)) if values else None
        result: dict[str, Any] = {"name": self.name, "value": value, "values": values}
        if self.op == "info":
            return {**result, "target": "(context)", "pass": "info"}
        passed = None if value is None else (operator.ge if self.op == ">=" else operator.le)(value, self.goal)
        return {**result, "target": f"{self.op} {self.goal:g}{self.unit}", "pass": passed}


def _ratio(
    top: str, bottom: str, streams: int, pick: Callable[[Row], float]
) -> Callable[[Keyed, list[Row]], float | None]:
    def compute(rows: Keyed, memory: list[Row]) -> float | None:
        a, b = rows.get((top, streams)), rows.get((bottom, streams))
        if a is None or b is None or not pick(b):
            return None
        return pick(a) / pick(b)

    return compute


def _first_frame_gap(rows: Keyed, memory: list[Row]) -> float | None:
    c, d2 = rows.get(("c", 1)), rows.get(("d2", 1))
    if c is None or d2 is None:
        return None
    return float(c["first_frame_ms"]["p50"] - d2["first_frame_ms"]["p50"])


def _memory_ratio(rows: Keyed, memory: list[Row]) -> float | None:
    by_server = {m["server"]: m for m in memory}
    gateway, echo = by_server.get("gateway-idle"), by_server.get("echo-idle")
    if gateway is None or echo is None or echo["kb_per_stream"] <= 0:
        return None
    return float(gateway["kb_per_stream"] / echo["kb_per_stream"])


def _rps(row: Row) -> float:
    return float(row["requests_per_s"])


def _ff_p99(row: Row) -> float:
    return float(row["first_frame_ms"]["p99"])


def _ff_p50(row: Row) -> float:
    return float(row["first_frame_ms"]["p50"])


def _server_cpu(row: Row) -> float:
    return float(row.get("server_cpu_us_per_request", 0.0))


TARGETS = (
    Target("(b)/(a) requests/s, 1 stream", _ratio("b", "a", 1, _rps), ">=", 0.75),
    Target("(b)/(a) requests/s, 50 streams", _ratio("b", "a", 50, _rps), ">=", 0.75),
    Target("(b)/(a) first-frame p99, 1 stream", _ratio("b", "a", 1, _ff_p99), "<=", 1.5),
    Target("(b)/(a) first-frame p99, 50 streams", _ratio("b", "a", 50, _ff_p99), "<=", 1.5),
    Target("(s)/(s0) session turn, SQLite, requests/s, 1 stream", _ratio("s", "s0", 1, _rps), ">=", 0.9),
    Target("(s)/(s0) session turn, SQLite, requests/s, 50 streams", _ratio("s", "s0", 50, _rps), ">=", 0.9),
    Target("(sr)/(s0) session turn, Redis, requests/s, 1 stream", _ratio("sr", "s0", 1, _rps), ">=", 0.8),
    Target("(sr)/(s0) session turn, Redis, requests/s, 50 streams", _ratio("sr", "s0", 50, _rps), ">=", 0.8),
    Target("(o)/(b) metrics + tracing, requests/s, 1 stream", _ratio("o", "b", 1, _rps), ">=", 0.9),
    Target("(o)/(b) metrics + tracing, requests/s, 50 streams", _ratio("o", "b", 50, _rps), ">=", 0.9),
    Target("(p)/(b) limits in-process, requests/s, 1 stream", _ratio("p", "b", 1, _rps), ">=", 0.9),
    Target("(p)/(b) limits in-process, requests/s, 50 streams", _ratio("p", "b", 50, _rps), ">=", 0.9),
    Target("(pr)/(b) limits in Redis, requests/s, 1 stream", _ratio("pr", "b", 1, _rps), ">=", 0.8),
    Target("(pr)/(b) limits in Redis, requests/s, 50 streams", _ratio("pr", "b", 50, _rps), ">=", 0.8),
    Target("(r)/(b) route of one target, requests/s, 1 stream", _ratio("r", "b", 1, _rps), ">=", 0.95),
    Target("(r)/(b) route of one target, requests/s, 50 streams", _ratio("r", "b", 50, _rps), ">=", 0.95),
    Target("(h) hedged first-frame p50 - 100 ms hedge delay - (r) fast target's", hedge_overhead_ms, "<=", 20.0, " ms"),
    Target("(c)/(d) requests/s, 1 stream", _ratio("c", "d", 1, _rps), ">=", 2.0),
    Target("(c)/(d) requests/s, 50 streams", _ratio("c", "d", 50, _rps), ">=", 2.0),
    Target("(c) - (d2) first-frame p50, 1 stream", _first_frame_gap, "<=", 1.0, " ms"),
    Target("(c)/(e) requests/s, 1 stream", _ratio("c", "e", 1, _rps), ">=", 20.0),
    Target("(c)/(e) requests/s, 50 streams", _ratio("c", "e", 50, _rps), ">=", 20.0),
    Target("(c)/(e) first-frame p50, 1 stream", _ratio("c", "e", 1, _ff_p50), "<=", 0.1),
    Target("(c)/(e) first-frame p50, 50 streams", _ratio("c", "e", 50, _ff_p50), "<=", 0.1),
    Target("idle stream memory, gateway/bare", _memory_ratio, "<=", 1.5, per_round=False),
    Target("OpenAI-compatible HTTP (f)/(e) LiteLLM requests/s, 50 streams", _ratio("f", "e", 50, _rps), ">=", 20.0),
    Target(
        "OpenAI-compatible HTTP (f)/(e) LiteLLM first-frame p50, 50 streams", _ratio("f", "e", 50, _ff_p50), "<=", 0.1
    ),
    Target("OpenAI-compatible HTTP (f)/(e) LiteLLM first-frame p50, 1 stream", _ratio("f", "e", 1, _ff_p50), "<=", 0.1),
    Target("OpenAI-compatible HTTP (f)/(g) pass-through requests/s, 1 stream", _ratio("f", "g", 1, _rps), ">=", 0.75),
    Target(
        "OpenAI-compatible HTTP (f)/(g) pass-through requests/s, 50 streams", _ratio("f", "g", 50, _rps), ">=", 0.75
    ),
    Target("bridge WebSocket (w)/(b) gRPC requests/s, 1 stream", _ratio("w", "b", 1, _rps), ">=", 0.6),
    Target("bridge WebSocket (w)/(b) gRPC requests/s, 50 streams", _ratio("w", "b", 50, _rps), ">=", 0.6),
    Target("(b)/(a) server CPU per request, 1 stream", _ratio("b", "a", 1, _server_cpu), "info"),
    Target("(b)/(a) server CPU per request, 50 streams", _ratio("b", "a", 50, _server_cpu), "info"),
    # The ceilings: (c) cannot beat the gateway with a free provider (b), nor (b) bare grpc.aio (a).
    Target("ceiling of (c)/(d): (b)/(d) requests/s, 1 stream", _ratio("b", "d", 1, _rps), "info"),
    Target("ceiling of (c)/(d): (b)/(d) requests/s, 50 streams", _ratio("b", "d", 50, _rps), "info"),
    Target("ceiling of (c)/(e): (a)/(e) requests/s, 1 stream", _ratio("a", "e", 1, _rps), "info"),
    Target("serve --workers 2: (b2)/(b) requests/s, 50 streams", _ratio("b2", "b", 50, _rps), "info"),
    Target("serve --workers 2: (c2)/(c) requests/s, 50 streams", _ratio("c2", "c", 50, _rps), "info"),
)


def _keyed(rows: list[Row]) -> Keyed:
    return {(row["scenario"], row["streams"]): row for row in rows}


def evaluate(rows: list[Row], memory: list[Row]) -> list[dict[str, Any]]:
    """Every target from the rows of one round."""
    return evaluate_rounds([rows], memory)


def evaluate_rounds(rounds: list[list[Row]], memory: list[Row]) -> list[dict[str, Any]]:
    """Every target computed per round (each round's rows only), reported as the median over the rounds."""
    keyed = [_keyed(rows) for rows in rounds]
    return [target.evaluate_rounds(keyed, memory) for target in TARGETS]


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """Per (scenario, streams), in the order first measured: the row of the round with the median requests/s (the
    lower of the two middle ones for an even count), with `rounds_measured` and `requests_per_s_range` added."""
    measured: dict[tuple[str, int], list[Row]] = {}
    for rows in rounds:
        for row in rows:
            measured.setdefault((row["scenario"], row["streams"]), []).append(row)
    shown = []
    for rows in measured.values():
        rates = [_rps(row) for row in rows]
        middle = statistics.median_low(rates)
        row = rows[rates.index(middle)]
        shown.append({**row, "rounds_measured": len(rows), "requests_per_s_range": [min(rates), max(rates)]})
    return shown


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def _ms(figures: dict[str, float]) -> str:
    return f"{figures['p50']:.2f} / {figures['p90']:.2f} / {figures['p99']:.2f}"


def _us(row: Row, key: str) -> str:
    value = row.get(key)
    return "—" if value is None else f"{value:,.0f}"


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _span(low: float, high: float, digits: int) -> str:
    return f"{low:,.{digits}f}-{high:,.{digits}f}" if low >= 0 else f"{low:,.{digits}f} to {high:,.{digits}f}"


def _rounds_cell(row: Row) -> str:
    count = row.get("rounds_measured", 1)
    if count < 2:
        return str(count)
    low, high = row["requests_per_s_range"]
    return f"{count} ({_span(low, high, 0)})"


def _value_cell(check: dict[str, Any]) -> str:
    """`0.93`, or `0.93 (0.88-0.97, 3 rounds)` when the median is of more than one round."""
    if check["value"] is None:
        return "n/a"
    values = check.get("values", [])
    if len(values) < 2:
        return f"{check['value']:.2f}"
    return f"{check['value']:.2f} ({_span(min(values), max(values), 2)}, {len(values)} rounds)"


def _throughput(rows: list[Row]) -> list[str]:
    lines = [
        "| | scenario | streams | clients | rounds (req/s min-max) | req/s | frames/s | first frame | final frame "
        "| server CPU | upstream CPU | client CPU | other CPU % | steal % | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
        lines.append(
            f"| ({row['scenario']}) | {row['title']} | {_streams_cell(row)} | {row['client_processes']} "
            f"| {_rounds_cell(row)} | {row['requests_per_s']:,.0f} | {row['frames_per_s']:,.0f} "
            f"| {_ms(row['first_frame_ms'])} | {_ms(row['final_frame_ms'])} "
            f"| {_us(row, 'server_cpu_us_per_request')} | {_us(row, 'upstream_cpu_us_per_request')} "
            f"| {_us(row, 'client_cpu_us_per_request')} | {_us(row, 'other_cpu_percent')} "
            f"| {_us(row, 'steal_cpu_percent')} | {errors} |"
        )
    return lines


def _streams_cell(row: Row) -> str:
    return f"{row['streams']} (turns)" if row.get("interleaved") else str(row["streams"])


def _interleaved_sentence(rows: list[Row]) -> str:
    levels = sorted({row["streams"] for row in rows if row.get("interleaved")})
    if not levels:
        return ""
    turns = ", ".join(
        f"{turn.turn_s:g} s at {streams} stream{'s' if streams > 1 else ''} (the first {turn.settle_s:g} s not counted)"
        for streams in levels
        for turn in [interleave.Turns.for_streams(streams)]
    )
    return (
        " Streams `N (turns)`: those scenarios were measured together at that level, the same client processes"
        f" loading one server after the other in short turns ({turns}), so every one samples the same seconds of"
        " the machine (``bench/interleave.py``)."
    )


def _rounds_sentence(settings: dict[str, Any]) -> str:
    rounds = settings.get("rounds", 1)
    if rounds < 2:
        return ""
    return (
        f" {rounds} rounds, each level measured scenario by scenario or in turns: each row is the round with the"
        " median req/s, each target the median of its per-round values (range and count beside it)."
    )


def markdown(result: dict[str, Any]) -> str:
    """The whole report as markdown: settings line, throughput table, targets, memory, notes."""
    settings, lines = result["settings"], []
    box = result["machine"]
    lines.append(f"# integration-api benchmark ({result['date']})")
    lines.append("")
    lines.append(
        f"{box['cpus']} CPUs ({box['cpu_model'] or 'unknown'}), Python {box['python']}, grpcio {box['grpcio']}. "
        f"Each level: {settings['warmup_s']:g} s warm-up, {settings['duration_s']:g} s measured; "
        f"{settings['words']} text frames + 1 final per request.{_rounds_sentence(settings)}"
        f"{_interleaved_sentence(result['rows'])} Latencies in ms "
        "(p50 / p90 / p99); CPU in µs per request (server = the process under test, upstream = the emulator); "
        "other CPU % = other processes, steal % = CPU the VM host gave to other guests (% of one CPU)."
    )
    lines += ["", "## Throughput", "", *_throughput(result["rows"])]
    lines += ["", "## Targets", "", "| comparison | value | target | result |", "|---|--:|--:|---|"]
    for check in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "not measured", "info": ""}[check["pass"]]
        lines.append(f"| {check['name']} | {_value_cell(check)} | {check['target']} | {verdict} |")
    if result["memory"]:
        lines += ["", "## Memory per idle stream", ""]
        lines.append("| server | idle streams | RSS before (MiB) | RSS after (MiB) | KiB per stream | verified |")
        lines.append("|---|--:|--:|--:|--:|--:|")
        for m in result["memory"]:
            lines.append(
                f"| {m['server']} | {m['streams']:,} | {m['rss_before_kb'] / 1024:,.1f} "
                f"| {m['rss_after_kb'] / 1024:,.1f} | {m['kb_per_stream']:.1f} | {m['verified']} |"
            )
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {_one_line(note)}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
