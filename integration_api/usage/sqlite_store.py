"""The embedded usage store: ``usage.sqlite3`` in the data directory, written by one thread of its own.

Several processes may append at once (``serve --workers N``, replicas sharing the data directory, the ``usage``
command reading): WAL lets readers work beside the one writer, each batch is one ``BEGIN IMMEDIATE`` transaction
(the write lock is taken up front, so SQLite's busy handler can wait for it; a deferred transaction that reads
before writing could be refused without waiting), and a writer waits up to ``BUSY_TIMEOUT_MS`` for another's
batch to commit. Batches take milliseconds, so that wait is short. `synchronous=NORMAL`: a crash of the process
loses nothing committed; a power loss may lose the last batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from integration_api.sqlite import StoreThread, open_wal
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


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the usage file with the schema in place (also used by the ``usage`` command)."""
    return open_wal(path, _SCHEMA, BUSY_TIMEOUT_MS, check_same_thread=False)  # we BEGIN ourselves


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
        self._thread = StoreThread("usage store", self.path, lambda: connect(self.path))

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        return await self._thread.run(operation)

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
        await self._thread.aclose()
