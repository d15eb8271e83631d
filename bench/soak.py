"""``make bench-soak`` / ``python -m bench.soak``: the gateway's memory over a long run of ``integration-api bench``.

Starts the gateway (``integration-api serve``, one process) with the OpenAI adapter in front of the OpenAI
emulator, or with the simulated provider; runs the real load-test command against it in a subprocess for
``--minutes``; and meanwhile samples the gateway process's RSS and CPU seconds every ``--sample-s``. Issue 5's
target is memory flat, at most 5% growth after warm-up: the RSS at the end of the run, and the highest RSS after
warm-up, each against the RSS at the end of warm-up (the first sample at or after ``--warmup-s``). Writes
``<out>/soak.md`` and ``<out>/soak.json`` (every sample) and prints the markdown.

    python -m bench.soak [--minutes 10] [--streams 20] [--provider openai|simulated] [--sample-s 5]
        [--warmup-s 60] [--processes 1] [--out bench/results] [--strict]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ServerProcess
from bench.report import machine
from bench.scenarios import REPLY, WORDS
from bench.servers import Gateway, start_emulator, start_gateway

GROWTH_LIMIT_PERCENT = 5.0  # issue 5: memory flat, <= 5% growth after warm-up
MODEL = "gpt-4o-mini"
CREDENTIAL = '{"key": "sk-bench"}'
LATE_S = 120.0  # how long the load may outlive its --duration (connecting, client processes) before it is stopped
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    """The gateway at one moment: seconds since the load started, RSS, CPU seconds used since then."""

    elapsed_s: float
    rss_kb: int
    cpu_s: float


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--streams", type=int, default=20, help="concurrent StreamChat streams (default 20)")
    parser.add_argument("--provider", choices=("openai", "simulated"), default="openai", help="default openai")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="growth is measured from here (default 60)")
    parser.add_argument("--processes", type=int, default=1, help="client processes of the load (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where soak.md/soak.json go")
    parser.add_argument("--strict", action="store_true", help="exit 1 when memory grew more than 5%%")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_s <= 0 or args.streams < 1 or args.processes < 1:
        parser.error("--minutes, --sample-s, --streams and --processes must be positive")
    if not 0 <= args.warmup_s < args.minutes * 60:
        parser.error("--warmup-s must be at least 0 and shorter than the run (--minutes x 60)")
    return args


def _load_argv(gateway: Gateway, args: argparse.Namespace) -> list[str]:
    """The `integration-api bench` command line against this gateway."""
    argv = [sys.executable, "-m", "integration_api.cli", "bench", "--target", gateway.target]
    argv += ["--api-key", gateway.api_key, "--provider", args.provider]
    if args.provider == "openai":
        argv += ["--model", MODEL, "--credential-json", CREDENTIAL]
    else:
        argv += ["--param", f"simulated_reply={REPLY}"]
    argv += ["--streams", str(args.streams), "--processes", str(args.processes)]
    argv += ["--duration", f"{args.minutes * 60:g}", "--json", "--no-progress"]
    return argv


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the load generator (this PID only) when it is still running: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _sample_during(
    load: subprocess.Popen[bytes], gateway: ServerProcess, every_s: float, limit_s: float
) -> list[Sample]:
    """Sample the gateway every `every_s` from now until the load exits, and once more as it exits."""
    started, cpu_start = time.monotonic(), gateway.cpu_seconds()
    samples: list[Sample] = []
    logged_minute = -1
    while True:
        running = load.poll() is None
        elapsed = time.monotonic() - started
        sample = Sample(round(elapsed, 2), gateway.rss_kb(), round(gateway.cpu_seconds() - cpu_start, 3))
        samples.append(sample)
        if int(elapsed // 60) > logged_minute:
            logged_minute = int(elapsed // 60)
            _log(f"t={elapsed:5.0f} s  gateway RSS {sample.rss_kb / 1024:,.1f} MiB, CPU {sample.cpu_s:,.1f} s")
        if not running:
            return samples
        gateway.check_alive()
        if elapsed > limit_s:
            raise TimeoutError(f"the load was still running after {elapsed:.0f} s")
        next_at = started + len(samples) * every_s
        while load.poll() is None and time.monotonic() < next_at:
            time.sleep(min(0.1, max(0.0, next_at - time.monotonic())))


def _run_load(argv: list[str], gateway: ServerProcess, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Run the load, sampling the gateway meanwhile: its exit code, its --json output and the samples."""
    out_path, err_path = log_dir / "bench.json", log_dir / "bench.log"
    with contextlib.ExitStack() as stack:
        stdout, stderr = stack.enter_context(out_path.open("wb")), stack.enter_context(err_path.open("wb"))
        load = subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=_ROOT)
        stack.callback(_stop, load)
        samples = _sample_during(load, gateway, args.sample_s, args.minutes * 60 + LATE_S)
    try:
        output = json.loads(out_path.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"integration-api bench exited with {load.returncode} and no results; see {err_path}"
        ) from exc
    return {"returncode": load.returncode, "bench": output, "samples": samples}


def evaluate(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    """RSS at the end of warm-up, at the end and at its highest after warm-up; growth against the first; verdict."""
    after = [s for s in samples if s.elapsed_s >= warmup_s]
    if not after or after[0].rss_kb <= 0:
        return {"pass": None}
    warm, end = after[0], samples[-1]
    peak = max(after, key=lambda s: s.rss_kb)
    growth = 100.0 * (end.rss_kb - warm.rss_kb) / warm.rss_kb
    max_growth = 100.0 * (peak.rss_kb - warm.rss_kb) / warm.rss_kb
    return {
        "warmup": asdict(warm),
        "end": asdict(end),
        "max": asdict(peak),
        "growth_percent": round(growth, 2),
        "max_growth_percent": round(max_growth, 2),
        "limit_percent": GROWTH_LIMIT_PERCENT,
        "pass": growth <= GROWTH_LIMIT_PERCENT and max_growth <= GROWTH_LIMIT_PERCENT,
    }


def _rows(samples: list[Sample], warmup_s: float, step_s: float) -> list[Sample]:
    """A compact choice of samples: the first at or after every `step_s`, the end of warm-up and the last one
    (which replaces a periodic one less than half a step before it)."""
    if not samples:
        return []
    chosen: dict[float, Sample] = {}
    mark = 0.0
    for sample in samples:
        if sample.elapsed_s >= mark:
            chosen[sample.elapsed_s] = sample
            while mark <= sample.elapsed_s:
                mark += step_s
    last = samples[-1]
    chosen = {t: s for t, s in chosen.items() if last.elapsed_s - t >= step_s / 2}
    warm = next((s for s in samples if s.elapsed_s >= warmup_s), last)
    chosen.update({warm.elapsed_s: warm, last.elapsed_s: last})
    return [chosen[key] for key in sorted(chosen)]


def _mib(kb: int) -> str:
    return f"{kb / 1024:,.1f}"


def _percent(value: float) -> str:
    return f"{round(value, 1) + 0.0:+.1f}%"  # + 0.0: no "-0.0%"


def markdown(result: dict[str, Any]) -> str:
    """The summary (RSS, growth against the target, the load's figures) and one row per minute of samples."""
    settings, memory, load, box = result["settings"], result["memory"], result["load"], result["machine"]
    lines = [f"# integration-api memory soak ({result['date']})", ""]
    lines.append(
        f"{box['cpus']} CPUs ({box['cpu_model'] or 'unknown'}), Python {box['python']}, grpcio {box['grpcio']}. "
        f"`integration-api bench` for {settings['minutes']:g} min against one gateway process, provider "
        f"`{settings['provider']}`, {settings['streams']} streams over {settings['processes']} client process(es); "
        f"gateway RSS sampled every {settings['sample_s']:g} s; growth measured from the first sample at or after "
        f"{settings['warmup_s']:g} s."
    )
    lines += ["", "| figure | value | target | result |", "|---|--:|--:|---|"]
    if memory["pass"] is None:
        lines.append("| memory growth after warm-up | n/a | | not measured |")
    else:
        verdict = "PASS" if memory["pass"] else "FAIL"
        limit = f"<= {memory['limit_percent']:g}%"
        for label, key in (
            ("RSS at end of warm-up", "warmup"),
            ("RSS at end", "end"),
            ("max RSS after warm-up", "max"),
        ):
            lines.append(f"| {label} (t = {memory[key]['elapsed_s']:.0f} s) | {_mib(memory[key]['rss_kb'])} MiB | | |")
        lines.append(f"| growth, end vs warm-up | {_percent(memory['growth_percent'])} | {limit} | {verdict} |")
        lines.append(f"| max growth after warm-up | {_percent(memory['max_growth_percent'])} | {limit} | {verdict} |")
    errors = ", ".join(f"{code}: {count:,}" for code, count in load["errors"].items()) or "0"
    lines.append(f"| requests completed | {load['requests']:,} | | |")
    lines.append(f"| requests/s | {load['requests_per_s']:,.0f} | | |")
    lines.append(f"| errors | {errors} | | |")
    cpu = result["gateway_cpu"]
    lines.append(
        f"| gateway CPU | {cpu['seconds']:,.1f} s ({cpu['percent']:.0f}% of a CPU, "
        f"{cpu['us_per_request']:,.0f} µs/request) | | |"
    )
    warm_rss = memory["warmup"]["rss_kb"] if memory["pass"] is not None else 0
    lines += ["", "## Samples", "", "| t (s) | RSS (MiB) | vs warm-up | gateway CPU (s) | CPU % since previous |"]
    lines.append("|--:|--:|--:|--:|--:|")
    previous: dict[str, Any] | None = None
    for row in result["rows"]:
        versus = _percent(100.0 * (row["rss_kb"] - warm_rss) / warm_rss) if warm_rss else "—"
        if row["elapsed_s"] < settings["warmup_s"]:
            versus = "(warm-up)"
        span = row["elapsed_s"] - previous["elapsed_s"] if previous else 0.0
        share = f"{100.0 * (row['cpu_s'] - previous['cpu_s']) / span:.0f}" if previous and span > 0 else "—"
        lines.append(f"| {row['elapsed_s']:.0f} | {_mib(row['rss_kb'])} | {versus} | {row['cpu_s']:,.1f} | {share} |")
        previous = row
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def _soak(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Start the servers, run the load while sampling, stop every process started."""
    with contextlib.ExitStack() as stack:
        emulator = None
        if args.provider == "openai":
            emulator = start_emulator(log_dir, WORDS)
            stack.callback(emulator.stop)
        gateway = start_gateway(log_dir, emulator=emulator, name="gateway")
        stack.callback(gateway.stop)
        _log(f"gateway pid {gateway.server.pid} on {gateway.target}; load for {args.minutes:g} min")
        return _run_load(_load_argv(gateway, args), gateway.server, args, log_dir)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out: Path = args.out
    log_dir = out / "logs" / "soak"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        run = _soak(args, log_dir)
    except (RuntimeError, TimeoutError, OSError) as exc:
        _log(f"soak failed: {exc}")
        return 2
    samples: list[Sample] = run["samples"]
    load = run["bench"]["results"]
    cpu_s, wall_s = samples[-1].cpu_s, samples[-1].elapsed_s
    notes = []
    if load["error_count"]:
        notes.append(f"{load['error_count']:,} requests failed; see {log_dir / 'gateway.log'}.")
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": {
            "minutes": args.minutes,
            "streams": args.streams,
            "provider": args.provider,
            "processes": args.processes,
            "sample_s": args.sample_s,
            "warmup_s": args.warmup_s,
            "words": WORDS,
        },
        "memory": evaluate(samples, args.warmup_s),
        "load": load,
        "gateway_cpu": {
            "seconds": cpu_s,
            "percent": 100.0 * cpu_s / wall_s if wall_s else 0.0,
            "us_per_request": 1e6 * cpu_s / load["requests"] if load["requests"] else 0.0,
        },
        "rows": [asdict(s) for s in _rows(samples, args.warmup_s, 60.0 if args.minutes >= 5 else 10.0)],
        "notes": notes,
        "samples": [asdict(s) for s in samples],
        "wall_s": round(time.monotonic() - started, 1),
    }
    text = markdown(result)
    (out / "soak.md").write_text(text)
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    _log(f"done in {result['wall_s']:.0f} s: {out / 'soak.md'}, {out / 'soak.json'}")
    return 1 if args.strict and result["memory"]["pass"] is not True else 0


if __name__ == "__main__":
    sys.exit(main())
