"""`integration-api chat` with pipes instead of a terminal: lines from stdin, plain text out (no escape sequence),
the end of input exits 0; a one-shot `chat "message"` still streams one reply; a bad --param is refused."""

from __future__ import annotations

import re
import subprocess

from tests.repl.conftest import ENTRY_POINT, WAIT_S, GatewayThread, repl_env


def run_piped(gateway: GatewayThread, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRY_POINT), "chat", "--target", gateway.target, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=repl_env(gateway),
        timeout=WAIT_S,
        check=False,
    )


def test_piped_lines_give_plain_output(gateway_thread: GatewayThread) -> None:
    script = "first words here\n/param simulated_reply canned\nsecond\n/info\n/sessions\n/stats\n"
    result = run_piped(gateway_thread, script)  # no /quit: the end of input ends it

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out  # no colour, no cursor movement
    assert "you>" not in out  # no prompt drawn into a pipe
    lines = out.splitlines()
    assert re.fullmatch(r"connected to 127\.0\.0\.1:\d+ \(gateway .*\)", lines[1])
    session = re.fullmatch(r"session (sess_[\w-]+) on simulated", lines[2])
    assert session is not None
    assert lines[3] == "first words here"
    assert re.fullmatch(r"\[stop; \d+ tokens in, \d+ out; first token \d+ ms; .+\]", lines[4])
    assert lines[5] == "parameters: simulated_reply='canned'"
    assert lines[6] == "canned"
    assert lines[8] == f"session {session.group(1)}"
    assert re.search(r"^  messages +4$", out, re.MULTILINE)
    assert re.search(rf"^  \* +{session.group(1)} +simulated +- +4 ", out, re.MULTILINE)
    assert re.search(r"^  streams +2 ok, 0 failed, 0 cancelled$", out, re.MULTILINE)
    assert lines[-1] == "bye"


def test_quit_in_a_pipe_stops_reading(gateway_thread: GatewayThread) -> None:
    result = run_piped(gateway_thread, "/quit\nnever sent\n")

    assert result.returncode == 0, result.stderr
    assert "never sent" not in result.stdout
    assert result.stdout.splitlines()[-1] == "bye"


def test_an_unreachable_gateway_is_reported_and_the_repl_still_runs(gateway_thread: GatewayThread) -> None:
    result = subprocess.run(
        [str(ENTRY_POINT), "chat", "--target", "127.0.0.1:1"],
        input="hello?\n/help\n",
        capture_output=True,
        text=True,
        env=repl_env(gateway_thread),
        timeout=WAIT_S,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert re.search(r"^error: could not connect to 127\.0\.0\.1:1: .+ \(/connect to try again\)$", result.stdout,
                     re.MULTILINE)  # fmt: skip
    assert "error: not connected: /connect first" in result.stdout
    assert "/provider [NAME]" in result.stdout


def test_one_message_still_streams_one_reply(gateway_thread: GatewayThread) -> None:
    result = run_piped(gateway_thread, "", "just this once")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("just this once")
    assert "session" not in result.stdout


def test_a_bad_param_is_refused(gateway_thread: GatewayThread) -> None:
    result = run_piped(gateway_thread, "", "--param", "no-equals-sign")

    assert result.returncode == 2
    assert "--param 'no-equals-sign': write NAME=VALUE" in result.stderr
