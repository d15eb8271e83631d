"""bench/report.py on hand-made rows: targets per round and their medians, the rows shown, the markdown."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import TARGETS, Target, evaluate, evaluate_rounds, markdown, median_rows

B_OVER_A_1 = "(b)/(a) requests/s, 1 stream"
MEMORY = "idle stream memory, gateway/bare"


def _row(scenario: str, streams: int, rps: float, round_: int = 1, **extra: Any) -> dict[str, Any]:
    latency = {"p50": 1.0, "p90": 2.0, "p99": 3.0}
    return {
        "scenario": scenario,
        "title": f"scenario {scenario}",
        "streams": streams,
        "client_processes": 1,
        "requests_per_s": rps,
        "frames_per_s": 21 * rps,
        "first_frame_ms": latency,
        "final_frame_ms": latency,
        "errors": {},
        "client_cpu_percent": 50.0,
        "round": round_,
        **extra,
    }


def _by_name(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in checks}


def test_each_round_gives_its_own_ratio_and_the_median_decides() -> None:
    # Round 2's (b) ran during a burst of steal: its ratio alone would fail; the median of 3 passes.
    rounds = [
        [_row("a", 1, 1000, 1), _row("b", 1, 900, 1)],
        [_row("a", 1, 1000, 2), _row("b", 1, 500, 2)],
        [_row("a", 1, 800, 3), _row("b", 1, 760, 3)],
    ]

    check = _by_name(evaluate_rounds(rounds, []))[B_OVER_A_1]

    assert check["values"] == pytest.approx([0.9, 0.5, 0.95])
    assert check["value"] == pytest.approx(0.9)
    assert check["pass"] is True


def test_a_ratio_pairs_rows_of_the_same_round_only() -> None:
    # Round 1 has no (b) (it failed), round 2 no (a): no round has both, so nothing is computed across rounds.
    rounds = [[_row("a", 1, 1000, 1)], [_row("b", 1, 900, 2)]]

    check = _by_name(evaluate_rounds(rounds, []))[B_OVER_A_1]

    assert check == {**check, "value": None, "values": [], "pass": None}


def test_the_median_is_over_the_rounds_that_could_compute_it() -> None:
    rounds = [
        [_row("a", 1, 1000, 1), _row("b", 1, 600, 1)],
        [_row("a", 1, 1000, 2)],
        [_row("a", 1, 1000, 3), _row("b", 1, 800, 3)],
    ]

    check = _by_name(evaluate_rounds(rounds, []))[B_OVER_A_1]

    assert check["values"] == pytest.approx([0.6, 0.8])
    assert check["value"] == pytest.approx(0.7)  # even count: the mean of the two middle values
    assert check["pass"] is False


def test_memory_is_measured_once_and_computed_once() -> None:
    memory = [{"server": "echo-idle", "kb_per_stream": 10.0}, {"server": "gateway-idle", "kb_per_stream": 12.0}]
    rounds: list[list[dict[str, Any]]] = [[_row("a", 1, 1000, n)] for n in (1, 2, 3)]

    with_rounds = _by_name(evaluate_rounds(rounds, memory))[MEMORY]
    memory_only = _by_name(evaluate_rounds([], memory))[MEMORY]

    assert with_rounds["values"] == pytest.approx([1.2])
    assert memory_only["value"] == pytest.approx(1.2)
    assert memory_only["pass"] is True


def test_one_round_evaluates_as_before() -> None:
    rows = [_row("a", 1, 1000), _row("b", 1, 700)]

    checks = _by_name(evaluate(rows, []))

    assert list(checks) == [target.name for target in TARGETS]
    assert checks[B_OVER_A_1]["value"] == pytest.approx(0.7)
    assert checks[B_OVER_A_1]["pass"] is False
    info = checks["(b)/(a) server CPU per request, 1 stream"]
    assert (info["pass"], info["target"]) == ("info", "(context)")


def test_a_target_of_lower_is_better_uses_the_median_too() -> None:
    target = Target("x", lambda rows, memory: rows[("x", 1)]["requests_per_s"], "<=", 1.5)
    rounds = [{("x", 1): _row("x", 1, value)} for value in (1.0, 9.0, 1.4)]

    result = target.evaluate_rounds(rounds, [])

    assert (result["value"], result["pass"], result["target"]) == (1.4, True, "<= 1.5x")


def test_the_table_shows_the_round_with_the_median_requests_per_second() -> None:
    rounds = [
        [_row("a", 1, 300, 1), _row("b", 1, 385, 1), _row("b", 50, 900, 1)],
        [_row("a", 1, 310, 2), _row("b", 1, 202, 2)],
        [_row("a", 1, 290, 3), _row("b", 1, 370, 3), _row("b", 50, 1000, 3)],
    ]

    shown = {(row["scenario"], row["streams"]): row for row in median_rows(rounds)}

    assert list(shown) == [("a", 1), ("b", 1), ("b", 50)]
    assert (shown[("a", 1)]["round"], shown[("a", 1)]["rounds_measured"]) == (1, 3)
    assert shown[("b", 1)]["round"] == 3
    assert shown[("b", 1)]["requests_per_s_range"] == [202, 385]
    assert shown[("b", 50)]["round"] == 1  # two rounds: the lower middle one, a row that was measured
    assert "rounds_measured" not in rounds[0][0]  # the rounds' own rows are left as measured


def _result(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "date": "2025-01-01 00:00 UTC",
        "machine": {"cpus": 2, "cpu_model": "", "python": "3.11", "grpcio": "1"},
        "settings": {"warmup_s": 0.5, "duration_s": 1.5, "words": 20, "rounds": len(rounds)},
        "rows": median_rows(rounds),
        "rounds": rounds,
        "targets": evaluate_rounds(rounds, []),
        "memory": [],
        "notes": [],
    }


def test_markdown_shows_the_spread_of_rows_and_targets() -> None:
    rounds = [
        [_row("a", 1, 1000, 1, steal_cpu_percent=31.6), _row("b", 1, 880, 1)],
        [_row("a", 1, 1000, 2), _row("b", 1, 930, 2)],
        [_row("a", 1, 1000, 3), _row("b", 1, 970, 3)],
    ]

    text = markdown(_result(rounds))

    assert f"| {B_OVER_A_1} | 0.93 (0.88-0.97, 3 rounds) | >= 0.75x | PASS |" in text
    assert "| (b) | scenario b | 1 | 1 | 3 (880-970) | 930 |" in text
    assert "| steal % |" in text
    assert "| 32 | 0 |" in text  # (a)'s shown row is round 1's (all equal): steal %, then errors
    assert "3 rounds, each level measured scenario by scenario or in turns" in text


def test_markdown_of_one_round_has_no_spread() -> None:
    text = markdown(_result([[_row("a", 1, 1000), _row("b", 1, 930)]]))

    assert f"| {B_OVER_A_1} | 0.93 | >= 0.75x | PASS |" in text
    assert "| (b) | scenario b | 1 | 1 | 1 | 930 |" in text
    assert "rounds, each level" not in text
