"""bench/interleave.py against two real bare gRPC echo servers: turns by the clock, counted requests, rows."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import interleave, scenarios
from bench.procs import ServerProcess
from bench.report import markdown
from bench.servers import start_echo
from integration_api.loadtest import GrpcLoad, LoadConfig

SHORT, LONG = 2, 60  # text frames per reply of each echo


@pytest.fixture
def echoes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with contextlib.ExitStack() as stack:
        short = start_echo(tmp_path, SHORT, name="short")
        stack.callback(short.stop)
        long = start_echo(tmp_path, LONG, name="long")
        stack.callback(long.stop)
        yield short, long


def _lane(key: str, server: ServerProcess, streams: int = 1, processes: int = 1) -> interleave.Lane:
    whole = LoadConfig(target=f"127.0.0.1:{server.port}", streams=streams)
    return interleave.Lane(key, tuple(GrpcLoad(part) for part in whole.split(processes)), server.pid)


def test_one_stream_each_server_in_its_turns_with_its_own_figures(
    echoes: tuple[ServerProcess, ServerProcess],
) -> None:
    short, long = echoes
    turns = interleave.Turns.for_streams(1)

    rows = interleave.measure([_lane("short", short), _lane("long", long)], 1, duration_s=0.3)

    for key, words in (("short", SHORT), ("long", LONG)):
        row = rows[key]
        assert row["error_count"] == 0 and row["requests"] > 0
        assert row["frames_per_s"] / row["requests_per_s"] == pytest.approx(words + 1)
        assert row["elapsed_s"] == pytest.approx(turns.rounds(0.3) * turns.counted_s)  # counted parts only
        assert row["interleaved"] and row["streams"] == row["client_processes"] == 1
    # Each row's rate is its own requests over its own counted time: the longer reply is the slower lane.
    assert rows["long"]["requests_per_s"] < rows["short"]["requests_per_s"]
    assert rows["long"]["server_cpu_us_per_request"] > 0


def test_concurrent_streams_from_two_processes_take_turns_together(
    echoes: tuple[ServerProcess, ServerProcess],
) -> None:
    short, long = echoes

    rows = interleave.measure(
        [_lane("short", short, streams=6, processes=2), _lane("long", long, streams=6, processes=2)],
        6,
        duration_s=0.75,
    )

    for row in rows.values():
        assert row["error_count"] == 0
        assert row["requests"] >= 6  # every stream of both processes completed requests in the counted part
        assert row["client_processes"] == 2 and row["streams"] == 6
    assert rows["long"]["requests_per_s"] < rows["short"]["requests_per_s"]


def test_a_round_measures_a_lone_interleaved_scenario_in_its_own_window(tmp_path: Path) -> None:
    # Turns need two scenarios: with one (say `--only b,c`), it is measured in a window like any other.
    lone = dataclasses.replace(scenarios.SCENARIOS["a"], levels=(1,))
    other = dataclasses.replace(lone, key="a2", interleaved=False)
    ctx = scenarios.Context(scenarios.Timing(warmup_s=0.1, duration_s=0.3), tmp_path)

    rows = scenarios.run_round([lone, other], ctx, lambda _: None)

    assert sorted(row["scenario"] for row in rows) == ["a", "a2"]
    assert all(row["requests"] > 0 and not row.get("interleaved") for row in rows)
    assert ctx.notes == []


def test_the_report_marks_rows_measured_in_turns() -> None:
    latency = {"p50": 1.0, "p90": 2.0, "p99": 3.0}
    row = {"requests_per_s": 300.0, "frames_per_s": 6300.0, "first_frame_ms": latency, "final_frame_ms": latency}
    rows = [
        {"scenario": "a", "title": "a", "streams": 1, "client_processes": 1, "errors": {}, **row, "interleaved": True},
        {"scenario": "c", "title": "c", "streams": 1, "client_processes": 1, "errors": {}, **row},
    ]
    result = {
        "date": "today",
        "machine": {"cpus": 2, "cpu_model": "test", "python": "3", "grpcio": "1"},
        "settings": {"warmup_s": 0.1, "duration_s": 0.3, "words": 20},
        "rows": rows,
        "targets": [],
        "memory": [],
        "notes": [],
    }

    text = markdown(result)

    assert "| (a) | a | 1 (turns) |" in text
    assert "| (c) | c | 1 |" in text
    assert "0.1 s at 1 stream" in text and "loading one server after the other in short turns" in text


def test_only_grpc_stream_jobs_take_turns() -> None:
    with pytest.raises(TypeError, match="cannot be interleaved"):
        interleave._config(object())  # type: ignore[arg-type]
