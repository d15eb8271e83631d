"""Where the REPL's lines come from: prompt_toolkit on a terminal (editing, history), plain lines from a pipe.

Both raise `EOFError` at the end of input (Ctrl-D on a terminal); on a terminal, Ctrl-C at the prompt raises
`KeyboardInterrupt` (the loop just prompts again). While the prompt is shown, whatever else the REPL prints
(e.g. the idle watcher's "reconnected") appears above it instead of through it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

PROMPT = "you> "


class LineSource(Protocol):
    async def read(self) -> str: ...


class PromptLines:
    """A prompt_toolkit prompt with history (kept in `history` when given, else for this run only)."""

    def __init__(self, history: Path | None = None) -> None:
        store: History
        if history is not None:
            history.parent.mkdir(parents=True, exist_ok=True)
            store = FileHistory(str(history))
        else:
            store = InMemoryHistory()
        self._session: PromptSession[str] = PromptSession(history=store)

    async def read(self) -> str:
        # raw: the rich renderer's colours pass through; handle_sigint=False: the loop owns SIGINT (a Ctrl-C at
        # the prompt is a key press in raw mode anyway, and prompt_toolkit turns it into KeyboardInterrupt).
        with patch_stdout(raw=True):
            return await self._session.prompt_async(PROMPT, handle_sigint=False)


class PipeLines:
    """Lines of a pipe or file, read by a daemon thread so that the event loop never blocks on them."""

    def __init__(self, source: TextIO | None = None) -> None:
        self._source = source or sys.stdin
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in self._source:
            loop.call_soon_threadsafe(self._queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def read(self) -> str:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._pump, args=(asyncio.get_running_loop(),), name="repl-stdin", daemon=True
            )
            self._thread.start()
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # every later read is at the end too
            raise EOFError
        return line


def lines_for(stdin: TextIO, stdout: TextIO, history: Path | None) -> LineSource:
    """The prompt when both ends are a terminal; plain lines otherwise."""
    if stdin.isatty() and stdout.isatty():
        return PromptLines(history)
    return PipeLines(stdin)
