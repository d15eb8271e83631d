"""``make bench`` / ``python -m bench.run``: every scenario side by side in one run, on this machine.

(a) bare grpc.aio echo, (b) gateway + simulated provider, (c) gateway + OpenAI adapter -> emulator, (d) openai
SDK -> emulator, (d2) aiohttp -> emulator, (e) LiteLLM proxy -> emulator (when ``make bench-peers`` installed
it), (w) (b) over the gRPC-JSON bridge's WebSocket, at 1 and 50 concurrent streams; (b2) and (c2), (b) and (c)
with ``serve --workers 2``, at 50; then memory
per idle stream (``mem``: gateway vs bare echo). Writes
``<out>/latest.md`` and ``<out>/latest.json`` and prints the markdown.

The scenarios run in ``--rounds`` rounds (3; 1 with ``--quick``): a round starts every selected scenario's servers,
then measures each level: the gRPC scenarios compared with each other together, in turns (``bench.interleave``),
the others window after window (``scenarios.run_round``). On a shared VM a burst of CPU steal can halve one
window's figures; each target is computed from one round's rows, so both sides of a ratio were measured close
together, and the median over the rounds is reported
(``bench.report``). ``mem`` runs once, after the rounds.

    python -m bench.run [--quick] [--rounds 3] [--only a,b,mem] [--duration 8] [--warmup 2] [--out bench/results]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.memory import measure_idle_memory
from bench.report import Row, evaluate_rounds, machine, markdown, median_rows
from bench.scenarios import REPLY, SCENARIOS, WORDS, Context, Timing, run_round
from bench.servers import start_echo, start_gateway
from integration_api.loadtest import LoadConfig

ALL = (*SCENARIOS, "mem")
BUSY_PERCENT = 25.0  # CPU % of other processes during a window above which its figures are flagged
STEAL_PERCENT = 10.0  # CPU % stolen by the VM host during a window above which its figures are flagged
SATURATED_PERCENT = 85.0  # CPU % per load-generator process above which the client may be the bottleneck
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: short windows, 2,000 idle streams")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--rounds", type=int, help="rounds of every selected scenario (default 3; quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per level (default 8; quick 1.5)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per level (default 2; quick 0.5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes at 50 streams (default 2)")
    parser.add_argument("--idle-streams", type=int, help="idle streams for the memory test (default 10,000)")
    parser.add_argument("--idle-processes", type=int, default=4, help="client processes holding them")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.md/latest.json go")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a measured target fails")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(ALL)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _memory(ctx: Context, streams: int, processes: int) -> list[dict[str, Any]]:
    """Idle-stream memory of the bare echo, then of the gateway, each a fresh process."""
    results = []
    for name in ("echo-idle", "gateway-idle"):
        _log(f"(mem) {streams:,} idle streams on {name}")
        try:
            with contextlib.ExitStack() as stack:
                if name == "echo-idle":
                    server = start_echo(ctx.log_dir, WORDS, name=name)
                    stack.callback(server.stop)
                    config = LoadConfig(target=f"127.0.0.1:{server.port}", metadata=(("x-api-key", "idle"),))
                else:
                    gateway = start_gateway(ctx.log_dir, name=name)
                    stack.callback(gateway.stop)
                    server, config = gateway.server, LoadConfig(target=gateway.target, metadata=gateway.metadata)
                config = dataclasses.replace(config, parameters={"simulated_reply": REPLY})
                results.append(measure_idle_memory(server, config, streams, processes, _log))
        except (RuntimeError, TimeoutError, OSError) as exc:
            ctx.notes.append(f"(mem) {name} failed: {exc}")
            _log(f"(mem) {name} failed: {exc}")
    return results


def _which_rounds(numbers: list[int], total: int) -> str:
    """`round 2` / `rounds 1, 3`; empty when the numbers are every round of the run."""
    if len(numbers) == total:
        return ""
    return f"round{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def _labels(rows: list[Row], rounds: int) -> str:
    """`(b) x1, (pr) x50 (rounds 1, 3)`: the rows' scenarios and levels, with their rounds unless in every one."""
    seen: dict[tuple[str, int], list[int]] = {}
    for row in rows:
        seen.setdefault((row["scenario"], row["streams"]), []).append(row.get("round", 1))
    labels = []
    for (scenario, streams), numbers in seen.items():
        where = _which_rounds(numbers, rounds)
        labels.append(f"({scenario}) x{streams}" + (f" ({where})" if where else ""))
    return ", ".join(labels)


def _caveats(rows: list[Row], rounds: int = 1) -> list[str]:
    """Notes on what may have skewed the figures (of any round): other work on the machine, CPU stolen by the VM
    host, saturated load generators."""
    notes = []
    busy = [row for row in rows if row.get("other_cpu_percent", 0.0) > BUSY_PERCENT]
    if busy:
        worst = max(row["other_cpu_percent"] for row in busy)
        notes.append(
            f"Other processes used up to {worst:.0f}% of a CPU during {_labels(busy, rounds)}: those figures are "
            "skewed; rerun on a quiet machine."
        )
    stolen = [row for row in rows if row.get("steal_cpu_percent", 0.0) > STEAL_PERCENT]
    if stolen:
        worst = max(row["steal_cpu_percent"] for row in stolen)
        notes.append(
            f"The VM host took (steal) up to {worst:.0f}% of a CPU during {_labels(stolen, rounds)}: other guests "
            "shared this machine's cores, and those windows' figures are low; the medians over rounds damp it, "
            "more --rounds damp it more."
        )
    saturated = [row for row in rows if row["client_cpu_percent"] / row["client_processes"] > SATURATED_PERCENT]
    if saturated:
        notes.append(
            f"The load generators used over {SATURATED_PERCENT:.0f}% of a CPU each during "
            f"{_labels(saturated, rounds)}: there the client shares the bottleneck (see client CPU per request; "
            "the server CPU per request is the cleaner figure)."
        )
    return notes


def _merge_notes(per_round: list[list[str]]) -> list[str]:
    """Each round's notes once: a note of every round as it is, one of some rounds only prefixed with those."""
    seen: dict[str, list[int]] = {}
    for number, notes in enumerate(per_round, 1):
        for note in notes:
            rounds = seen.setdefault(note, [])
            if number not in rounds:
                rounds.append(number)
    merged = []
    for note, numbers in seen.items():
        where = _which_rounds(numbers, len(per_round))
        merged.append(f"{where.capitalize()}: {note}" if where else note)
    return merged


def _run_rounds(ctx: Context, keys: list[str], count: int) -> list[list[Row]]:
    """Every scenario of `keys`, `count` times (``scenarios.run_round``: all of a round's servers up at once, each
    level measured in turns or window by window); each row carries its `round` (from 1)."""
    rounds: list[list[Row]] = []
    per_round_notes: list[list[str]] = []
    before = list(ctx.notes)
    for number in range(1, count + 1):
        if count > 1:
            _log(f"round {number} of {count}")
        ctx.notes.clear()
        rows = run_round([SCENARIOS[key] for key in keys], ctx, _log)
        for row in rows:
            row["round"] = number
        rounds.append(rows)
        per_round_notes.append(list(ctx.notes))
    ctx.notes[:] = before + _merge_notes(per_round_notes)
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    quick = args.quick
    timing = Timing(
        warmup_s=args.warmup if args.warmup is not None else (0.5 if quick else 2.0),
        duration_s=args.duration if args.duration is not None else (1.5 if quick else 8.0),
        clients=args.clients,
    )
    idle_streams = args.idle_streams or (2_000 if quick else 10_000)
    out: Path = args.out
    ctx = Context(timing, out / "logs")
    selected = args.only.split(",")
    count = args.rounds if args.rounds is not None else (1 if quick else 3)
    started = time.monotonic()
    rounds = _run_rounds(ctx, [k for k in SCENARIOS if k in selected], count)
    memory = _memory(ctx, idle_streams, args.idle_processes) if "mem" in selected else []
    ctx.notes.extend(_caveats([row for rows in rounds for row in rows], count))
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": {
            "warmup_s": timing.warmup_s,
            "duration_s": timing.duration_s,
            "clients_at_50": timing.clients,
            "words": WORDS,
            "idle_streams": idle_streams,
            "only": selected,
            "rounds": count,
        },
        "rows": median_rows(rounds),
        "rounds": rounds,
        "targets": evaluate_rounds(rounds, memory),
        "memory": memory,
        "notes": ctx.notes,
        "wall_s": round(time.monotonic() - started, 1),
    }
    text = markdown(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    _log(f"done in {result['wall_s']:.0f} s: {out / 'latest.md'}, {out / 'latest.json'}")
    failed = any(check["pass"] is False for check in result["targets"])
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
