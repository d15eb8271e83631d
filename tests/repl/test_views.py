"""The REPL's pure parts: parameter parsing, durations, the plain renderer's blocks and tables, the command table."""

from __future__ import annotations

import io

import pytest

from integration_api.client import ChatResult, SessionInfo, Timings, Usage
from integration_api.client._types import AssistantMessage
from integration_api.repl.commands import COMMANDS, find
from integration_api.repl.options import parse_parameters, parse_value
from integration_api.repl.render import Renderer
from integration_api.repl.views import duration, reply_summary, session_rows, sessions_table


def test_parameter_values_are_json_when_they_parse() -> None:
    assert parse_value("200") == 200
    assert parse_value("true") is True
    assert parse_value('["a", 1]') == ["a", 1]
    assert parse_value("plain words") == "plain words"
    assert parse_parameters(["simulated_delay_ms=200", 'model.stop=["x"]', "note=a=b"]) == {
        "simulated_delay_ms": 200,
        "stop": ["x"],
        "note": "a=b",
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_parameters(["no-equals"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_parameters(["=3"])


def test_durations() -> None:
    assert duration(0.0123) == "12 ms"
    assert duration(3.25) == "3.2 s"
    assert duration(125) == "2 min 05 s"
    assert duration(86_399) == "23 h 59 min"


def test_reply_summary() -> None:
    result = ChatResult("r", AssistantMessage("hi"), "stop", Usage(5, 1, 6), Timings(12.0, 3.4))
    assert reply_summary(result, 0.02) == "stop; 5 tokens in, 1 out; first token 3 ms; 20 ms"


def test_session_rows_say_which_model_the_requests_use() -> None:
    info = SessionInfo("sess_1", "simulated", model="a", parameters={"name": "a", "temperature": 0.5},
                       created_at=100.0, last_used_at=100.0, expires_at=200.0)  # fmt: skip
    rows = dict(session_rows(info, model="b", now=150.0))
    assert rows["model"] == "b (session default a)"
    assert rows["parameters"] == "temperature=0.5"
    assert rows["created"] == "50.0 s ago"
    assert rows["expires"] == "in 50.0 s"


def test_sessions_table_marks_the_current_one() -> None:
    headers, rows = sessions_table([SessionInfo("sess_1", "simulated"), SessionInfo("sess_2", "probe")], "sess_2")
    assert headers[1] == "id"
    assert [(row[0], row[1]) for row in rows] == [("", "sess_1"), ("*", "sess_2")]


def test_the_plain_renderer_writes_no_escape_sequence() -> None:
    out = io.StringIO()
    render = Renderer(out)
    render.delta("partial")
    render.info("after a reply cut short")  # starts on a line of its own
    render.block("title", [("a", "1"), ("long name", "2")])
    render.table("things", ["id", "n"], [["x", "10"], ["yy", "2"]])
    render.table("empty", ["id"], [])
    assert out.getvalue() == (
        "partial\nafter a reply cut short\ntitle\n  a          1\n  long name  2\n"
        "things\n  id  n\n  x   10\n  yy  2\nempty\n  (none)\n"
    )


def test_every_command_of_the_issue_is_in_the_table() -> None:
    names = {"help", "stats", "server", "health", "connect", "disconnect", "ping", "new", "info", "sessions",
             "delete", "clear", "quit", "provider", "model", "system"}  # fmt: skip
    assert names <= set(COMMANDS)
    assert find("exit") is COMMANDS["quit"]
    assert find("nope") is None
