"""`Sessions`: the operations on sessions that the RPCs and the session layer share, over one store.

It owns the store, the clock, the trim policy and the per-session locks. A lock serializes the requests of one
session in this process (a session is one conversation: the second request must see the first one's turn); the
wait is bounded by ``session_lock_timeout_s``, after which the request is refused with RESOURCE_EXHAUSTED
(retryable: the session is busy, not the client late). Across processes the store's compare-and-set on the
revision keeps turns from being lost: the later of two concurrent turns ends with ABORTED and is not stored.

A turn starts from this process's own copy of the session when it has one (the one its last turn wrote), not
from a store read: the store is read again only after another process changed the session (the compare-and-set
fails: ABORTED, and the copy is dropped). So a session deleted through another process is refused with ABORTED
after that turn instead of NOT_FOUND before it; deleted or expired in this process, it is NOT_FOUND as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace

from integration_api.errors import Aborted, NotFound, ResourceExhausted
from integration_api.sessions.history import trim
from integration_api.sessions.stats import ServerStats
from integration_api.sessions.store import MAX_LIST, Owner, Session, SessionStore
from integration_api.settings import Settings
from providers.types import AssistantMessage, ChatMessage, JsonValue, Usage

SESSION_ID_PREFIX = "sess_"
BUSY_RETRY_AFTER_S = 1.0
CACHED_SESSIONS = 4096  # sessions whose last written copy this process keeps, most recently used


class _Lock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # requests holding or waiting for it: the entry goes when the last one leaves


class Sessions:
    """Sessions of every owner, kept in `store`."""

    def __init__(self, settings: Settings, store: SessionStore, stats: ServerStats) -> None:
        self.store = store
        self.stats = stats
        self.max_messages = settings.session_max_messages
        self.max_tokens = settings.session_max_tokens
        self.lock_timeout_s = settings.session_lock_timeout_s
        # Public so a test can drive expiry with a fake clock, also on the sessions of a running server.
        self.clock: Callable[[], float] = time.time
        self._locks: dict[tuple[Owner, str], _Lock] = {}
        self._written: OrderedDict[tuple[Owner, str], Session] = OrderedDict()  # see the module doc

    @property
    def ttl_s(self) -> float:
        return self.store.ttl_s

    async def create(
        self, owner: Owner, provider: str, system_prompt: str, parameters: Mapping[str, JsonValue]
    ) -> Session:
        now = self.clock()
        session = Session(
            id=SESSION_ID_PREFIX + secrets.token_urlsafe(18),
            owner=owner,
            provider=provider,
            system_prompt=system_prompt,
            parameters=dict(parameters),
            created_at=now,
            last_used_at=now,
        )
        await self.store.create(session, now)
        self._remember(session)
        self.stats.sessions_created += 1
        return session

    async def get(self, owner: Owner, session_id: str, *, for_turn: bool = False) -> Session:
        """`owner`'s session; NotFound when it is missing, expired or another project's (the same answer).

        `for_turn`: the session a turn starts from (under `turn`): this process's last written copy when it has one.
        """
        now = self.clock()
        if for_turn:
            written = self._written.get((owner, session_id))
            if written is not None and self.store.alive(written, now):
                self._written.move_to_end((owner, session_id))
                return written
        session = await self.store.get(owner, session_id, now) if session_id else None
        if session is None:
            self._written.pop((owner, session_id), None)
            raise self._not_found(session_id)
        return session

    def _remember(self, session: Session) -> None:
        key = (session.owner, session.id)
        self._written[key] = session
        self._written.move_to_end(key)
        while len(self._written) > CACHED_SESSIONS:
            self._written.popitem(last=False)

    def _not_found(self, session_id: str) -> NotFound:
        return NotFound(
            f"no session {session_id!r} (it never existed, expired after {self.ttl_s:g} s unused, was deleted,"
            " or belongs to another project)",
            human_message="This conversation does not exist or has expired.",
        )

    async def list(self, owner: Owner, limit: int = 0) -> list[Session]:
        limit = MAX_LIST if limit <= 0 else min(limit, MAX_LIST)
        return await self.store.list(owner, self.clock(), limit)

    async def delete(self, owner: Owner, session_id: str) -> None:
        self._written.pop((owner, session_id), None)
        if not await self.store.delete(owner, session_id, self.clock()):
            raise self._not_found(session_id)

    async def count_active(self) -> int:
        return await self.store.count_active(self.clock())

    @contextlib.asynccontextmanager
    async def turn(self, owner: Owner, session_id: str) -> AsyncIterator[None]:
        """Hold the session for one request; waits for the request before it, at most `lock_timeout_s`."""
        key = (owner, session_id)
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Lock()
        entry.users += 1
        try:
            try:
                async with asyncio.timeout(self.lock_timeout_s):
                    await entry.lock.acquire()
            except TimeoutError as exc:
                raise ResourceExhausted(
                    f"session {session_id!r} is busy: the request before this one on it did not finish within"
                    f" {self.lock_timeout_s:g} s (a session runs one request at a time)",
                    human_message="This conversation is still answering a previous message; try again shortly.",
                    retry_after=BUSY_RETRY_AFTER_S,
                ) from exc
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[key]

    async def commit(
        self, session: Session, new_messages: Sequence[ChatMessage], reply: AssistantMessage, usage: Usage
    ) -> Session:
        """Append one successful turn (its new messages and the reply), trimmed; Aborted if the session moved on."""
        history, dropped = trim((*session.messages, *new_messages, reply), self.max_messages, self.max_tokens)
        now = self.clock()
        updated = replace(
            session,
            messages=history,
            last_used_at=now,
            revision=session.revision + 1,
            requests=session.requests + 1,
            input_tokens=session.input_tokens + usage.input_tokens,
            output_tokens=session.output_tokens + usage.output_tokens,
            trimmed=session.trimmed + dropped,
        )
        if not await self.store.replace(updated, session.revision, now):
            self._written.pop((session.owner, session.id), None)  # the next turn reads what the store has
            raise Aborted(
                f"session {session.id!r} changed while this request ran (another request on it, on another server"
                " process, finished first; or it expired or was deleted): this turn was not kept",
                human_message="The conversation changed meanwhile; send the message again.",
            )
        self._remember(updated)
        return updated
