"""The embedded usage store: ``usage.sqlite3`` in the data directory, written by one thread of its own.

Several processes may append at once (``serve --workers N``, replicas sharing the data directory, the ``usage``
command reading): WAL lets readers work beside the one writer, each batch is one ``BEGIN IMMEDIATE`` transaction
(the write lock is taken up front, so SQLite's busy handler can wait for it; a deferred transaction that reads
before writing could be refused without waiting), and a writer waits up to ``BUSY_TIMEOUT_MS`` for another's
batch to commit. Batches take milliseconds, so that wait is short. `synchronous=NORMAL`: a crash of the process
loses nothing committed; a power loss may lose the last batches.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from integration_api.errors import Unavailable
from integration_api.usage.record import (
    CANCELLED,
    COLUMNS,
    GROUP_KEYS,
    OK,
    UsageQuery,
    UsageRecord,
    UsageRow,
    as_tuple,
)
from integration_api.usage.store import UsageStore

T = TypeVar("T")
FILE_NAME = "usage.sqlite3"
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1
# Opening the file (switching it to WAL, creating the table) can meet another process doing the same; these
# statements are retried while SQLite reports the database busy.
OPEN_ATTEMPTS = 50

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_records (
    id              INTEGER PRIMARY KEY,
    time            REAL    NOT NULL,
    request_id      TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    organization_id TEXT    NOT NULL,
    project_id      TEXT    NOT NULL,
    key_id          TEXT,
    user_id         TEXT,
    auth_method     TEXT    NOT NULL,
    rpc             TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    code            INTEGER NOT NULL,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cost            REAL    NOT NULL,
    ttft_ms         REAL,
    total_ms        REAL    NOT NULL,
    retries         INTEGER NOT NULL,
    prompt          TEXT,
    reply           TEXT
);
CREATE INDEX IF NOT EXISTS usage_records_by_time ON usage_records (time);
CREATE INDEX IF NOT EXISTS usage_records_by_project ON usage_records (organization_id, project_id, time);
PRAGMA user_version = {SCHEMA_VERSION};
"""
_INSERT = f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _busy(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorcode", None) in _BUSY_CODES


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the usage file with the schema in place (also used by the ``usage`` command)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # we BEGIN ourselves
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    for attempt in range(OPEN_ATTEMPTS):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(_SCHEMA)
            return connection
        except sqlite3.OperationalError as error:
            if not _busy(error) or attempt == OPEN_ATTEMPTS - 1:
                connection.close()
                raise
            time.sleep(0.01 * (attempt + 1))  # another process is switching the file to WAL right now
    raise AssertionError("unreachable")


def summarize(connection: sqlite3.Connection, query: UsageQuery) -> list[UsageRow]:
    columns = ["strftime('%Y-%m-%d', time, 'unixepoch')" if key == "day" else GROUP_KEYS[key] for key in query.group_by]
    where: list[str] = []
    parameters: list[float | str] = []
    if query.since is not None:
        where.append("time >= ?")
        parameters.append(query.since)
    if query.organization is not None:
        where.append("organization_id = ?")
        parameters.append(query.organization)
    if query.project is not None:
        where.append("project_id = ?")
        parameters.append(query.project)
    selected = [*columns, "COUNT(*)", "SUM(status NOT IN (?, ?))", "SUM(status = ?)"]
    selected += ["SUM(input_tokens)", "SUM(output_tokens)", "SUM(cost)"]
    sql = f"SELECT {', '.join(selected)} FROM usage_records"  # columns come from GROUP_KEYS, never from input
    if where:
        sql += " WHERE " + " AND ".join(where)
    if columns:
        positions = ", ".join(str(index + 1) for index in range(len(columns)))
        sql += f" GROUP BY {positions} ORDER BY {positions}"
    rows = connection.execute(sql, [OK, CANCELLED, CANCELLED, *parameters]).fetchall()
    width = len(columns)
    return [
        UsageRow(
            keys=dict(zip(query.group_by, row[:width], strict=True)),
            requests=row[width],
            errors=row[width + 1] or 0,
            cancelled=row[width + 2] or 0,
            input_tokens=row[width + 3] or 0,
            output_tokens=row[width + 4] or 0,
            cost=float(row[width + 5] or 0.0),
        )
        for row in rows
        if row[width]  # no GROUP BY: one row even when nothing matched
    ]


class SqliteUsageStore(UsageStore):
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-sqlite")
        self._connection: sqlite3.Connection | None = None

    # --- the store's thread --------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = connect(self.path)
        return self._connection

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return operation(self._db())
            except sqlite3.Error as exc:
                raise Unavailable(f"the usage store ({self.path}) failed: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    # --- UsageStore ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._run(lambda db: None)

    async def write(self, records: Sequence[UsageRecord]) -> None:
        rows = [as_tuple(record) for record in records]

        def insert(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_INSERT, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if rows:
            await self._run(insert)

    async def summarize(self, query: UsageQuery) -> list[UsageRow]:
        return await self._run(lambda db: summarize(db, query))

    async def recent(self, limit: int = 100) -> list[UsageRecord]:
        def select(db: sqlite3.Connection) -> list[UsageRecord]:
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM usage_records ORDER BY id DESC LIMIT ?", (limit,))
            return [UsageRecord(*row) for row in rows]

        return await self._run(select)

    async def count(self) -> int:
        return int(await self._run(lambda db: db.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0]))

    async def aclose(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
