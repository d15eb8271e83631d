"""The trim policy and the stats histogram, on their own."""

from __future__ import annotations

import pytest

from integration_api.errors import InvalidArgument
from integration_api.sessions.history import approximate_tokens, check_new_messages, trim
from integration_api.sessions.stats import Histogram, ServerStats
from providers.types import AssistantMessage, ChatMessage, SystemMessage, ToolCall, ToolMessage, ToolResult, UserMessage


def test_trim_drops_the_oldest_and_never_starts_with_a_reply() -> None:
    turns: list[ChatMessage] = [UserMessage("q1"), AssistantMessage("a1"), UserMessage("q2"), AssistantMessage("a2")]
    assert trim(turns, 4, 1000) == (tuple(turns), 0)
    assert trim(turns, 3, 1000) == (tuple(turns[2:]), 2)  # a1 alone would open the history: it goes too
    tool_turn: list[ChatMessage] = [
        UserMessage("q1"),
        AssistantMessage("", (ToolCall("c", "f", "{}"),)),
        ToolMessage((ToolResult("c", "f", "r"),)),
        AssistantMessage("a1"),
        UserMessage("q2"),
    ]
    assert trim(tool_turn, 4, 1000) == ((UserMessage("q2"),), 4)  # never a tool result without its call


def test_trim_by_approximate_tokens() -> None:
    assert approximate_tokens(UserMessage("a" * 9)) == 3  # characters / 4, rounded up
    turns: list[ChatMessage] = [UserMessage("a" * 40), AssistantMessage("b" * 40), UserMessage("c" * 4)]
    assert trim(turns, 100, 21) == (tuple(turns), 0)  # 10 + 10 + 1: at the limit
    assert trim(turns, 100, 20) == ((UserMessage("c" * 4),), 2)  # the reply goes with its question
    assert trim(turns, 100, 0) == ((), 3)


def test_only_new_user_or_tool_messages_go_with_a_session() -> None:
    check_new_messages([UserMessage("hi"), ToolMessage((ToolResult("c", "f", "r"),))], "s")
    for message in (SystemMessage("x"), AssistantMessage("y")):
        with pytest.raises(InvalidArgument):
            check_new_messages([UserMessage("hi"), message], "s")


def test_histogram_quantiles_are_within_ten_percent() -> None:
    histogram = Histogram()
    for ms in range(1, 101):
        histogram.observe(ms * 1_000_000)
    summary = histogram.summary()
    assert summary.count == 100 and summary.average_ms == pytest.approx(50.5)
    assert 50 <= summary.p50_ms <= 55 and 95 <= summary.p95_ms <= 105
    assert Histogram().summary().p95_ms == 0


def test_server_stats_snapshot_sums_its_providers() -> None:
    stats = ServerStats(clock=lambda: 10.0)
    for name, succeeded in (("a", True), ("a", False), ("b", True)):
        counters = stats.provider(name)
        counters.started()
        counters.ended(succeeded, started_ns=0, first_output_ns=1)
    with stats.stream():
        snapshot = stats.snapshot()
    assert (snapshot.requests, snapshot.succeeded, snapshot.failed, snapshot.active_streams) == (3, 2, 1, 1)
    assert [p.provider for p in snapshot.providers] == ["a", "b"] and snapshot.uptime_s == 0
    assert stats.snapshot().active_streams == 0
