"""The session rows: a turn on a session kept by the server vs a stateless request carrying the same messages.

(s0) sends, every time, a conversation of `HISTORY` earlier messages plus the new user message; (s) and (sr) send
only the new message on a session (one per stream, created when the stream opens) whose history the server trims
to the same `HISTORY` messages, on the SQLite store and on Redis. Every request thus reaches the provider with the
same messages; what differs is who holds them. After the measurement, the bytes each stored session takes in its
store are noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis

from integration_api.loadtest import LoadConfig, LoadJob
from integration_api.loadtest._core import StartFn, _connect, _Stream, meter_cpu
from integration_api.loadtest._requests import (
    open_channel,
    packed_value,
    prompt_text,
    stream_chat_method,
    with_request_id,
)
from integration_api.loadtest._stats import Budget, LoadStats
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc

HISTORY = 10  # earlier messages every request carries (5 turns)
REDIS_URL = "redis://127.0.0.1:6379/10"  # the bench's own database, flushed before each run


def _user(text: str) -> pb.Message:
    return pb.Message(role="user", user=pb.UserMessage(content=text))


def _history(reply: str) -> list[pb.Message]:
    messages = []
    for _ in range(HISTORY // 2):
        messages.append(_user(prompt_text(20)))
        messages.append(pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=[reply])))
    return messages


@dataclass(frozen=True)
class SessionLoad:
    """`config.streams` streams, one lane each; `on_session`: each stream's requests continue one session."""

    config: LoadConfig
    on_session: bool

    def _template(self, session_id: str) -> bytes:
        config = self.config
        reply = str(config.parameters.get("simulated_reply", ""))
        request = pb.ChatRequest(
            providerName=config.provider,
            credential=pb.Credential(id=1),
            conversations=[*([] if self.on_session else _history(reply)), _user(prompt_text(config.prompt_words))],
            modelParameters={f"model.{key}": packed_value(value) for key, value in config.parameters.items()},
            sessionId=session_id,
        )
        return request.SerializeToString()

    async def stream_template(self, channel: grpc.aio.Channel) -> bytes:
        """The request one stream sends again and again (on its own new session when `on_session`)."""
        session_id = ""
        if self.on_session:
            config = self.config
            created = await pb_grpc.SessionServiceStub(channel).CreateSession(
                pb.CreateSessionRequest(providerName=config.provider), metadata=config.metadata
            )
            session_id = created.session.sessionId
        return self._template(session_id)

    async def run(self, start: StartFn, stats: LoadStats) -> None:
        config = self.config
        channel = open_channel(config, 0)
        try:
            await _connect(channel, config.target)
            templates = [await self.stream_template(channel) for _ in range(config.streams)]
            method = stream_chat_method(channel)
            streams = [_Stream(method, config, stats) for _ in range(config.streams)]
            window = await start()
            stats.window = window
            budget = Budget(window, None)
            finished = asyncio.Event()
            meter = asyncio.ensure_future(meter_cpu(window, stats, finished))

            async def lane(index: int) -> None:
                number = 0
                while budget.take() and streams[index].failure is None:
                    request_id = f"{index}-{number}"
                    number += 1
                    await streams[index].exchange(request_id, with_request_id(templates[index], request_id))

            await asyncio.gather(*(lane(index) for index in range(config.streams)))
            finished.set()
            await meter
            await asyncio.gather(*(stream.close() for stream in streams))
        finally:
            await channel.close()


def jobs(config: LoadConfig, on_session: bool) -> Callable[[int, int], list[LoadJob]]:
    def make(streams: int, processes: int) -> list[LoadJob]:
        whole = dataclasses.replace(config, streams=streams)
        return [SessionLoad(part, on_session) for part in whole.split(processes)]

    return make


def redis_available() -> str | None:
    """Why the Redis row cannot run, or None when the local Redis answers (its bench database flushed)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        return f"no Redis answers on 127.0.0.1:6379 ({exc})"
    finally:
        client.close()
    return None


def sqlite_bytes_per_session(data_dir: Path) -> str:
    """The database's pages in use (rows and indexes, as a reader sees them through the WAL) per session: not the
    files' sizes, which count the WAL's pages of turns long superseded (up to its 1,000-page checkpoint)."""
    path = data_dir / "sessions.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        count = int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
        body = int(db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM sessions").fetchone()[0])
        pages = int(db.execute("PRAGMA page_count").fetchone()[0]) - int(
            db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        size = pages * int(db.execute("PRAGMA page_size").fetchone()[0])
    return _note(count, body, size)


def redis_bytes_per_session() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match="integration_api:session:*", count=1000))
        memory = sum(int(client.memory_usage(key) or 0) for key in keys)
        body = sum(len(client.hget(key, "body") or b"") for key in keys)
        client.flushdb()
    finally:
        client.close()
    return _note(len(keys), body, memory)


def _note(count: int, body: int, stored: int) -> str:
    if not count:
        return "no session was stored"
    return (
        f"{count} sessions of {HISTORY} messages: {body / count / 1024:.1f} KiB of JSON each,"
        f" {stored / count / 1024:.1f} KiB in the store each"
    )


def session_settings(redis_url: str | None) -> dict[str, Any]:
    settings = {"INTEGRATION_API_SESSION_MAX_MESSAGES": str(HISTORY)}
    if redis_url is not None:
        settings["INTEGRATION_API_REDIS_URL"] = redis_url
    return settings
