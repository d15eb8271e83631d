"""`integration-api chat` (no message) through a real pseudo-terminal against a real gateway: a multi-turn chat
on a session, every slash command, Ctrl-C cancelling a slow reply, reconnection, /quit and Ctrl-D exiting 0."""

from __future__ import annotations

import re

from tests.repl.conftest import GatewayThread, Repl

SUMMARY = r"stop; (\d+) tokens in, (\d+) out"
SESSION = r"session (sess_[\w-]+) on (\w+)"
# The last rows of the blocks; `.` also crosses the escape sequences rich puts between a row's cells.
BLOCK_END = r"expires.*\n"
STATS_END = r"reconnections.*\n"
SERVER_END = r"total time.*\n"


def started(spawn, *args: str) -> tuple[Repl, str]:
    """A REPL that has connected and created its session; returns it and the session id."""
    repl: Repl = spawn(*args)
    repl.expect(r"connected to 127\.0\.0\.1:\d+ \(gateway ")
    found = re.search(SESSION, repl.expect(SESSION))
    assert found is not None
    return repl, found.group(1)


def field(text: str, name: str) -> str:
    """The value of row `name` of a block (/info, /stats, /server) in plain output."""
    found = re.search(rf"^\s*{re.escape(name)}\s+(.+?)\s*$", text, re.MULTILINE)
    assert found is not None, f"no {name!r} row in {text!r}"
    return found.group(1)


def info(repl: Repl) -> str:
    return repl.command("/info", BLOCK_END)


def test_two_turns_keep_the_context(spawn) -> None:
    repl, session_id = started(spawn)

    first = re.search(SUMMARY, repl.command("alpha beta gamma", SUMMARY))
    assert first is not None
    assert "alpha beta gamma" in repl.seen  # the simulated provider echoes the last user message
    text = repl.command("delta", SUMMARY)
    second = re.search(SUMMARY, text)
    assert second is not None
    assert "delta" in text.split("you>")[-1]
    # The second message was one word, yet the provider saw more: the session's history went with it.
    assert int(second.group(1)) > int(first.group(1))

    shown = info(repl)
    assert field(shown, "id") == session_id
    assert field(shown, "messages") == "4"
    assert field(shown, "requests") == "2"
    repl.line("/quit")
    assert repl.exit_status() == 0


def test_ctrl_c_cancels_a_slow_reply_and_the_repl_goes_on(spawn) -> None:
    # A second per word: the reply would take ten, so the Ctrl-C after its first word surely comes first.
    repl, _ = started(spawn, "--param", "simulated_delay_ms=1000")
    repl.command("/param simulated_reply one two three four five six seven eight nine ten", r"parameters: .*ten'")

    repl.line("go")
    repl.expect_exact("one ")  # the reply has started streaming
    repl.interrupt()
    text = repl.expect_exact("cancelled")
    assert "ten" not in text  # cut short: the rest never came

    stats = repl.command("/stats", STATS_END)
    assert field(stats, "streams") == "0 ok, 0 failed, 1 cancelled"
    assert field(info(repl), "messages") == "0"  # a cancelled turn leaves no trace in the session
    repl.command("/param simulated_delay_ms", r"parameters: simulated_reply")  # removed: fast again
    repl.command("/param simulated_reply", r"parameters: \(none\)")
    assert "after all" in repl.command("after all", SUMMARY)
    repl.line("/quit")
    assert repl.exit_status() == 0


def test_every_command(spawn, gateway_thread: GatewayThread) -> None:
    repl, first_id = started(spawn)
    target = gateway_thread.target

    shown = repl.command("/help", r"cancels the reply being streamed.*\n")
    for name in ("help", "stats", "server", "health", "connect", "disconnect", "ping", "new", "info", "sessions",
                 "delete", "clear", "provider", "model", "system", "param", "quit"):  # fmt: skip
        assert f"/{name}" in shown
    repl.command("hello there", SUMMARY)

    stats = repl.command("/stats", STATS_END)
    assert field(stats, "messages sent") == "1"
    assert field(stats, "streams") == "1 ok, 0 failed, 0 cancelled"
    assert int(field(stats, "chunks")) >= 2
    assert field(stats, "avg response").endswith(("ms", "s"))
    assert field(stats, "reconnections") == "0"

    server = repl.command("/server", SERVER_END)
    assert field(server, "requests").startswith("1 (1 ok, 0 failed)")
    assert field(server, "sessions").startswith("1 active, 1 created")

    repl.command("/health", re.escape(f"{target} is serving"))
    repl.command("/ping", r"pong from \S+ in \d+\.\d ms")

    repl.command("/model echo-2", r"model: echo-2")
    assert field(info(repl), "model").startswith("echo-2")

    new = re.search(SESSION, repl.command("/new", SESSION))
    assert new is not None and new.group(1) != first_id
    second_id = new.group(1)
    listed = repl.command("/sessions", re.escape(first_id) + r".*\n")  # newest first: the first session is last
    assert re.search(rf"\*\S*\s*\S*\s*{re.escape(second_id)}", listed)  # the current one is marked
    assert not re.search(rf"\*\S*\s*\S*\s*{re.escape(first_id)}", listed)

    repl.command(f"/delete {first_id}", rf"deleted session {re.escape(first_id)}")
    repl.command("/delete", rf"deleted session {re.escape(second_id)}; the next message starts a new session")
    assert "none" in repl.command("/sessions", r"sessions \(\* current\): none")

    shown = repl.command("/system You are terse.", SESSION)
    assert "system prompt: You are terse." in shown
    assert field(info(repl), "system prompt") == "You are terse."

    repl.command("/provider nosuch", r"error: .*nosuch")  # refused: nothing changes
    repl.command("/provider", r"provider: simulated")
    shown = repl.command("/provider probe", r"provider: probe")
    assert re.search(r"session sess_[\w-]+ on probe", shown)
    assert "via probe" in repl.command("via probe", SUMMARY)
    assert field(info(repl), "provider") == "probe"

    repl.command("/disconnect", re.escape(f"disconnected from {target}"))
    repl.command("/ping", r"not connected: /connect first")
    repl.command("anyone?", r"not connected: /connect first")
    repl.command("/connect", r"session sess_[\w-]+ kept \(2 messages\)")  # the gateway kept it meanwhile

    repl.line("/clear")
    repl.expect_exact("\x1b[2J")  # rich clears the screen
    repl.command("/frobnicate", r"unknown command /frobnicate")
    repl.line("/quit")
    repl.expect_exact("bye")
    assert repl.exit_status() == 0


def test_ctrl_d_exits_0(spawn) -> None:
    repl, _ = started(spawn)
    repl.prompt()
    repl.eof()
    repl.expect_exact("bye")
    assert repl.exit_status() == 0


def test_ctrl_c_at_the_prompt_only_clears_the_line(spawn) -> None:
    repl, _ = started(spawn)
    repl.prompt()
    repl.child.send("half a thought")
    repl.interrupt()
    assert "still here" in repl.command("still here", SUMMARY)
    repl.line("/quit")
    assert repl.exit_status() == 0


def test_a_lost_connection_reconnects_and_says_so(spawn, gateway_thread: GatewayThread) -> None:
    repl, session_id = started(spawn, "--ping-interval", "0.2")
    repl.command("remember me", SUMMARY)

    gateway_thread.stop()
    repl.expect(r"connection to 127\.0\.0\.1:\d+ lost \(.*\); reconnecting")
    gateway_thread.restart()  # same port, same data directory: the SQLite session is still there
    repl.expect(r"reconnected to 127\.0\.0\.1:\d+ \(attempt \d+\)")
    repl.expect(rf"session {re.escape(session_id)} kept \(2 messages\)")

    assert "after the outage" in repl.command("after the outage", SUMMARY)
    assert field(repl.command("/stats", STATS_END), "reconnections") == "1"
    assert field(info(repl), "messages") == "4"
    repl.line("/quit")
    assert repl.exit_status() == 0
