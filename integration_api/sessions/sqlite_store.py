"""The embedded session store: one SQLite file in the data directory (WAL), survives a restart.

Every statement runs on the store's own thread (``integration_api.sqlite.StoreThread``), so the event loop never
waits on the disk. Several server processes
(``serve --workers N``) may share the file: WAL lets readers and the one writer work at once, a busy writer is
waited for (``busy_timeout``), and `replace` is compare-and-set on the revision, so no process overwrites another's
turn. `synchronous=NORMAL` (WAL): a crash of the process loses nothing; a power loss may lose the last turns.
Expired rows are deleted lazily, when sessions are created.

Turns are group-committed (`replace`, through ``integration_api.batching.Batcher``): the turns that end while the
previous write is running are written in one transaction, each still its own compare-and-set with its own
answer, so at load a turn costs a share of one commit and one thread hop instead of a whole one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias, TypeVar

from integration_api.batching import Batcher
from integration_api.sessions import codec
from integration_api.sessions.store import MAX_LIST, Owner, Session, SessionStore
from integration_api.sqlite import StoreThread, open_wal

T = TypeVar("T")
_Turn: TypeAlias = tuple[Session, int, float]  # (the session after the turn, the revision it replaces, now)
FILE_NAME = "sessions.sqlite3"
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    last_used_at REAL NOT NULL,
    revision INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (organization_id, project_id, last_used_at);
CREATE INDEX IF NOT EXISTS sessions_by_use ON sessions (last_used_at);
"""

_REPLACE = (
    "UPDATE sessions SET last_used_at = ?, revision = ?, body = ?"
    " WHERE id = ? AND organization_id = ? AND project_id = ? AND revision = ? AND last_used_at > ?"
)


class SqliteSessionStore(SessionStore):
    def __init__(self, data_dir: Path, ttl_s: float) -> None:
        super().__init__(ttl_s)
        self.path = data_dir / FILE_NAME
        self._thread = StoreThread("session store", self.path, lambda: open_wal(self.path, _SCHEMA, BUSY_TIMEOUT_MS))
        self._turns: Batcher[_Turn, bool] = Batcher(self._replace_many)  # see `replace`

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        return await self._thread.run(operation)

    # --- SessionStore --------------------------------------------------------------------------------------------

    async def create(self, session: Session, now: float) -> None:
        cutoff = now - self.ttl_s

        def insert(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM sessions WHERE last_used_at <= ?", (cutoff,))
            db.execute(
                "INSERT INTO sessions (id, organization_id, project_id, last_used_at, revision, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*_key(session.owner, session.id), session.last_used_at, session.revision, codec.encode(session)),
            )

        await self._run(insert)

    async def get(self, owner: Owner, session_id: str, now: float) -> Session | None:
        def select(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT body FROM sessions WHERE id = ? AND organization_id = ? AND project_id = ?"
                " AND last_used_at > ?",
                (*_key(owner, session_id), now - self.ttl_s),
            ).fetchone()
            return None if row is None else bytes(row[0])

        body = await self._run(select)
        return None if body is None else codec.decode(body)

    async def list(self, owner: Owner, now: float, limit: int = MAX_LIST) -> list[Session]:
        def select(db: sqlite3.Connection) -> list[bytes]:
            rows = db.execute(
                "SELECT body FROM sessions WHERE organization_id = ? AND project_id = ? AND last_used_at > ?"
                " ORDER BY last_used_at DESC LIMIT ?",
                (owner.organization_id, owner.project_id, now - self.ttl_s, limit),
            ).fetchall()
            return [bytes(row[0]) for row in rows]

        return [codec.decode(body) for body in await self._run(select)]

    async def replace(self, session: Session, expected_revision: int, now: float) -> bool:
        return await self._turns.submit((session, expected_revision, now))

    async def _replace_many(self, turns: Sequence[_Turn]) -> Sequence[bool]:
        """Turns that ended while the previous write ran: one transaction (one WAL commit), a compare-and-set
        each."""
        ttl_s = self.ttl_s
        rows = [
            (
                session.last_used_at,
                session.revision,
                codec.encode(session),
                *_key(session.owner, session.id),
                expected_revision,
                now - ttl_s,
            )
            for session, expected_revision, now in turns
        ]

        def update(db: sqlite3.Connection) -> Sequence[bool]:
            if len(rows) == 1:
                return [db.execute(_REPLACE, rows[0]).rowcount == 1]
            with db:  # BEGIN ... COMMIT (ROLLBACK on an error: then no turn of the batch was kept)
                db.execute("BEGIN IMMEDIATE")
                return [db.execute(_REPLACE, row).rowcount == 1 for row in rows]

        return await self._run(update)

    async def delete(self, owner: Owner, session_id: str, now: float) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM sessions WHERE id = ? AND organization_id = ? AND project_id = ? AND last_used_at > ?",
                (*_key(owner, session_id), now - self.ttl_s),
            )
            return cursor.rowcount == 1

        return await self._run(remove)

    async def count_active(self, now: float) -> int:
        def count(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT COUNT(*) FROM sessions WHERE last_used_at > ?", (now - self.ttl_s,)).fetchone()
            return int(row[0])

        return await self._run(count)

    async def aclose(self) -> None:
        await self._turns.aclose()
        await self._thread.aclose()


def _key(owner: Owner, session_id: str) -> tuple[str, str, str]:
    return session_id, owner.organization_id, owner.project_id
