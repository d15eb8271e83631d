"""The REPL's slash commands: one table of name, usage, help and handler.

A handler gets the `Conversation` and the text after the command's name; it renders what it has to say and
returns `QUIT` to end the REPL. Gateway failures (`APIError`) and `NotConnected` propagate to the loop, which
reports them the same way for every command.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from integration_api.repl.conversation import Conversation
from integration_api.repl.options import parse_value
from integration_api.repl.views import client_rows, server_rows, session_rows, sessions_table


class Outcome(enum.Enum):
    CONTINUE = enum.auto()
    QUIT = enum.auto()


CONTINUE, QUIT = Outcome.CONTINUE, Outcome.QUIT
UNSET = "-"  # `/model -`, `/system -`: back to none

Handler = Callable[[Conversation, str], Awaitable[Outcome]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Handler


async def _help(chat: Conversation, _: str) -> Outcome:
    chat.render.table("commands", ["command", "what it does"], [[c.usage, c.help] for c in COMMANDS.values()])
    chat.render.info("anything else is sent as a message (start it with // to send a leading /)")
    chat.render.info("Ctrl-C cancels the reply being streamed; Ctrl-D or /quit leaves")
    return CONTINUE


async def _stats(chat: Conversation, _: str) -> Outcome:
    chat.render.block("client stats", client_rows(chat.stats))
    return CONTINUE


async def _server(chat: Conversation, _: str) -> Outcome:
    client, _stream = chat.require()
    chat.render.block(f"server stats of {chat.target}", server_rows(await client.server_stats()))
    return CONTINUE


async def _health(chat: Conversation, _: str) -> Outcome:
    client, _stream = chat.require()
    await client.check_connection()
    chat.render.info(f"{chat.target} is serving")
    return CONTINUE


async def _connect(chat: Conversation, target: str) -> Outcome:
    await chat.connect(target or None)
    return CONTINUE


async def _disconnect(chat: Conversation, _: str) -> Outcome:
    await chat.disconnect()
    return CONTINUE


async def _ping(chat: Conversation, _: str) -> Outcome:
    _client, stream = chat.require()
    seconds = await stream.ping()
    chat.render.info(f"pong from {chat.target} in {seconds * 1000:.1f} ms")
    return CONTINUE


async def _new(chat: Conversation, _: str) -> Outcome:
    await chat.new_session()
    return CONTINUE


async def _info(chat: Conversation, _: str) -> Outcome:
    info = await chat.session_info()
    chat.render.block(f"session {info.id}", session_rows(info, model=chat.model))
    return CONTINUE


async def _sessions(chat: Conversation, _: str) -> Outcome:
    client, _stream = chat.require()
    headers, rows = sessions_table(await client.list_sessions(), chat.session_id)
    chat.render.table("sessions (* current)", headers, rows)
    return CONTINUE


async def _delete(chat: Conversation, session_id: str) -> Outcome:
    deleted = await chat.delete(session_id or None)
    after = "; the next message starts a new session" if chat.session_id is None else ""
    chat.render.info(f"deleted session {deleted}{after}")
    return CONTINUE


async def _clear(chat: Conversation, _: str) -> Outcome:
    chat.render.clear()
    return CONTINUE


async def _quit(chat: Conversation, _: str) -> Outcome:
    return QUIT


async def _provider(chat: Conversation, name: str) -> Outcome:
    if not name:
        chat.render.info(f"provider: {chat.provider}")
        return CONTINUE
    await chat.switch_provider(name)
    chat.render.info(f"provider: {name}")
    return CONTINUE


async def _model(chat: Conversation, name: str) -> Outcome:
    if name:
        chat.model = "" if name == UNSET else name
    chat.render.info(f"model: {chat.model or '(provider default)'}")
    return CONTINUE


async def _system(chat: Conversation, text: str) -> Outcome:
    if not text:
        chat.render.info(f"system prompt: {chat.system or '(none)'}")
        return CONTINUE
    # The system prompt is a session's, fixed when it is created: a new one takes a new session.
    chat.system = "" if text == UNSET else text
    chat.render.info(f"system prompt: {chat.system or '(none)'}")
    if chat.connected:
        await chat.new_session()
    return CONTINUE


async def _param(chat: Conversation, text: str) -> Outcome:
    name, _, value = text.partition(" ")
    name = name.removeprefix("model.")
    if name and value.strip():
        chat.parameters[name] = parse_value(value.strip())
    elif name:
        chat.parameters.pop(name, None)
    listed = ", ".join(f"{key}={value!r}" for key, value in sorted(chat.parameters.items()))
    chat.render.info(f"parameters: {listed or '(none)'}")
    return CONTINUE


def _table(*commands: Command) -> dict[str, Command]:
    return {command.name: command for command in commands}


COMMANDS = _table(
    Command("help", "/help", "this list", _help),
    Command("stats", "/stats", "this client's counters: messages, replies ok/failed, chunks, times", _stats),
    Command("server", "/server", "the gateway's stats (GetServerStats)", _server),
    Command("health", "/health", "ask the gateway's health service", _health),
    Command("connect", "/connect [HOST:PORT]", "(re)connect, to another gateway when given", _connect),
    Command("disconnect", "/disconnect", "close the connection (the session stays on the gateway)", _disconnect),
    Command("ping", "/ping", "round trip of a PING on the stream", _ping),
    Command("new", "/new", "start a new session", _new),
    Command("info", "/info", "the current session: messages, requests, tokens, expiry", _info),
    Command("sessions", "/sessions", "this project's sessions (* marks the current one)", _sessions),
    Command("delete", "/delete [ID]", "delete the current session, or the one named", _delete),
    Command("clear", "/clear", "clear the screen", _clear),
    Command("provider", "/provider [NAME]", "show or set the provider (a new session)", _provider),
    Command("model", "/model [NAME|-]", "show or set the model of the next requests", _model),
    Command("system", "/system [TEXT|-]", "show or set the system prompt (a new session)", _system),
    Command("param", "/param [NAME [VALUE]]", "list, set or (no value) remove a request parameter", _param),
    Command("quit", "/quit", "leave (so does Ctrl-D)", _quit),
)
ALIASES = {"exit": "quit", "q": "quit", "?": "help"}


def find(name: str) -> Command | None:
    return COMMANDS.get(ALIASES.get(name, name))
