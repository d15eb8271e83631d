"""Fixtures for the REPL tests: a real gateway on its own event-loop thread (the test itself blocks on a
pseudo-terminal) and `integration-api chat`, the venv's entry point, spawned on a real pty with pexpect."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import re
import signal
import struct
import sys
import termios
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pexpect
import pytest
from pexpect import fdpexpect

from tests.conftest import RunningGateway, make_settings, start_gateway

T = TypeVar("T")
ENTRY_POINT = Path(sys.executable).with_name("integration-api")
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0  # the longest any expected output may take to appear (a bound, not a pause)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def plain(text: str) -> str:
    """`text` without terminal escape sequences (rich's colours, prompt_toolkit's cursor moves)."""
    return ANSI.sub("", text).replace("\r", "")


class GatewayThread:
    """A gateway from tests.conftest.start_gateway, served by an event loop on a thread of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self._thread.start()
        self.running: RunningGateway = self.call(start_gateway(make_settings(data_dir)))
        self.port = self.running.server.port
        self.api_key = self.running.api_key

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(WAIT_S)

    def stop(self) -> None:
        async def stop() -> None:
            await self.running.channel.close()
            await self.running.server.stop()

        self.call(stop())

    def restart(self) -> None:
        """A new server on the same port and data directory (the key store and the SQLite sessions survive)."""
        running = self.call(start_gateway(make_settings(self.data_dir, port=self.port)))
        self.running = running

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture
def gateway_thread(tmp_path: Path) -> Iterator[GatewayThread]:
    gateway = GatewayThread(tmp_path / "data")
    yield gateway
    gateway.close()


def repl_env(gateway: GatewayThread) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INTEGRATION_API_", "PROVIDER_API_KEY", "PROMPT_TOOLKIT"))
    }
    return env | {
        "INTEGRATION_API_KEY": gateway.api_key,
        "PYTHONPATH": str(REPO),  # the code under test, wherever the venv's editable install points
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect answers no cursor-position request; don't wait for one
    }


def spawn_on_pty(argv: list[str], env: dict[str, str], rows: int = 50, columns: int = 200) -> tuple[int, int]:
    """Start `argv` on a new pseudo-terminal as its controlling terminal (so Ctrl-C there is SIGINT for it);
    returns the pid and the terminal's master end.

    posix_spawn, not pexpect's fork: forking this process, whose gRPC threads serve the gateway, runs gRPC's fork
    handlers in the child, which then dies before it executes anything ("epoll_wait error: Bad file descriptor").
    The spawned process starts a session (setsid) and then opens the terminal, which makes it its controlling one.
    """
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    slave_path = os.ttyname(slave)
    os.close(slave)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, slave_path, os.O_RDWR, 0),
        (os.POSIX_SPAWN_DUP2, 0, 1),
        (os.POSIX_SPAWN_DUP2, 0, 2),
    ]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    return pid, master


class Repl:
    """`integration-api chat` on a pseudo-terminal; every wait is bounded by `WAIT_S`."""

    def __init__(self, gateway: GatewayThread, *args: str) -> None:
        argv = [str(ENTRY_POINT), "chat", "--target", gateway.target, *args]
        self.pid, master = spawn_on_pty(argv, repl_env(gateway))
        self.child = fdpexpect.fdspawn(master, encoding="utf-8", timeout=WAIT_S)
        self.returncode: int | None = None
        self.log = io.StringIO()  # everything the REPL wrote, for the message of a failed wait
        self.child.logfile_read = self.log
        self.seen = ""  # what the waits have consumed, escape sequences removed

    def _wait(self, wait: Callable[[], object], what: str) -> str:
        try:
            wait()
        except pexpect.ExceptionPexpect as exc:
            raise AssertionError(f"no {what} from the REPL; it wrote:\n{plain(self.log.getvalue())}") from exc
        after = self.child.after if isinstance(self.child.after, str) else ""  # EOF is a class, not text
        text = plain((self.child.before or "") + after)
        self.seen += text
        return text

    def interrupt(self) -> None:
        """Ctrl-C on the terminal."""
        self.child.send("\x03")

    def eof(self) -> None:
        """Ctrl-D on the terminal."""
        self.child.send("\x04")

    def expect(self, pattern: str) -> str:
        """Wait for `pattern` (a regex over the raw output); returns the plain text up to and including it."""
        return self._wait(lambda: self.child.expect(pattern), repr(pattern))

    def expect_exact(self, text: str) -> str:
        return self._wait(lambda: self.child.expect_exact(text), repr(text))

    def prompt(self) -> None:
        self.expect_exact("you>")  # prompt_toolkit draws the trailing space as a cursor move

    def line(self, text: str) -> None:
        """Type `text` and Enter at the next prompt."""
        self.prompt()
        self.child.sendline(text)

    def command(self, text: str, until: str) -> str:
        """Run `text` and wait until `until` (a regex) appears; returns the plain output."""
        self.line(text)
        return self.expect(until)

    def exit_status(self) -> int:
        """Wait for the REPL to end; its exit code."""
        self._wait(lambda: self.child.expect(pexpect.EOF), "end of output")
        return self._reap(0)

    def _reap(self, flags: int) -> int:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid == 0:
                return -1
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def close(self) -> None:
        if self._reap(os.WNOHANG) == -1:  # still running: the test failed before it ended
            os.kill(self.pid, signal.SIGKILL)
            self._reap(0)
        with contextlib.suppress(OSError):
            self.child.close()


@pytest.fixture
def spawn(gateway_thread: GatewayThread) -> Iterator[Any]:
    started: list[Repl] = []

    def spawn(*args: str) -> Repl:
        repl = Repl(gateway_thread, *args)
        started.append(repl)
        return repl

    yield spawn
    for repl in started:
        repl.close()
