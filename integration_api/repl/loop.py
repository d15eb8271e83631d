"""The REPL's loop: read a line, run it (a slash command or a message), until /quit or the end of input.

SIGINT belongs to the loop while it runs: during a reply it cancels that request (the gateway ends it as
CANCELLED and the REPL goes on); during a command it stops the command; at the terminal's prompt Ctrl-C is a key
press and only clears the line. Ctrl-D (end of input) and /quit end the REPL with exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from integration_api.client import IntegrationAPIError, ServiceUnavailableError, StreamClosedError
from integration_api.repl.commands import CONTINUE, QUIT, Outcome, find
from integration_api.repl.conversation import Conversation, NotConnected
from integration_api.repl.lines import LineSource, lines_for
from integration_api.repl.options import ReplOptions
from integration_api.repl.render import Renderer, renderer_for

BANNER = "integration-api chat: /help lists the commands, Ctrl-C cancels a reply, Ctrl-D or /quit leaves"


async def _command(chat: Conversation, line: str) -> Outcome:
    name, _, argument = line[1:].partition(" ")
    command = find(name.lower())
    if command is None:
        chat.render.error(f"unknown command /{name}: /help lists them")
        return CONTINUE
    try:
        return await command.run(chat, argument.strip())
    except NotConnected as error:
        chat.render.error(str(error))
    except (ServiceUnavailableError, StreamClosedError) as error:
        chat.render.error(str(error))
        if chat.connected:
            await chat.reconnect(str(error), chat.stream)
    except IntegrationAPIError as error:
        chat.render.error(str(error))
    return CONTINUE


async def run_line(chat: Conversation, line: str) -> Outcome:
    """One line: ``/name argument`` is a command, anything else a message (``//text`` sends ``/text``)."""
    if line.startswith("/") and not line.startswith("//"):
        return await _command(chat, line)
    try:
        await chat.send(line.removeprefix("/"))
    except NotConnected as error:
        chat.render.error(str(error))
    except IntegrationAPIError as error:  # e.g. the session could not be created
        chat.render.error(str(error))
    return CONTINUE


class _Foreground:
    """The line running now, for SIGINT: cancel its reply if it streams one, otherwise the whole line."""

    def __init__(self, chat: Conversation) -> None:
        self.chat = chat
        self.task: asyncio.Task[Outcome] | None = None

    def interrupt(self) -> None:
        task = self.task
        if task is not None and not task.done() and not self.chat.interrupt():
            task.cancel()

    async def run(self, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        self.task = asyncio.ensure_future(work)
        try:
            return await self.task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the REPL itself is being stopped
            self.chat.render.warn("interrupted")
            return CONTINUE
        finally:
            self.task = None


async def _start(chat: Conversation) -> Outcome:
    try:
        await chat.connect()
    except IntegrationAPIError as error:
        chat.render.error(f"could not connect to {chat.target}: {error} (/connect to try again)")
    return CONTINUE


async def _loop(chat: Conversation, lines: LineSource, foreground: _Foreground) -> None:
    while True:
        try:
            line = (await lines.read()).strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        if line and await foreground.run(run_line(chat, line)) is QUIT:
            return


async def run_repl(options: ReplOptions, render: Renderer | None = None, lines: LineSource | None = None) -> int:
    """Run the REPL until /quit or the end of input; returns the exit code (0)."""
    render = render or renderer_for(sys.stdout)
    lines = lines or lines_for(sys.stdin, sys.stdout, options.history)
    chat = Conversation(options, render)
    foreground = _Foreground(chat)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, foreground.interrupt)
        handles_sigint = True
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: Ctrl-C stays KeyboardInterrupt
        handles_sigint = False
    render.info(BANNER)
    watcher: asyncio.Task[None] | None = None
    try:
        await foreground.run(_start(chat))
        if options.ping_interval_s > 0:
            watcher = asyncio.ensure_future(chat.watch(options.ping_interval_s))
        await _loop(chat, lines, foreground)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await chat.close()
        if handles_sigint:
            loop.remove_signal_handler(signal.SIGINT)
    render.info("bye")
    return 0
