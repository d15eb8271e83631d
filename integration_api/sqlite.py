"""The embedded stores' SQLite: opening a file in WAL mode safely beside other processes, and one thread per store.

Several processes may open one file at once (``serve --workers N``, replicas sharing the data directory, a CLI
command): switching a file to WAL and creating its tables can then meet another process doing the same, and
SQLite answers "database is locked" at once for those statements, whatever the busy timeout. `open_wal` retries
them. `StoreThread` runs every statement of an async store on one thread of its own that owns the connection, so
the event loop never waits on the disk and the connection is only ever used from that thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from integration_api.errors import Unavailable

T = TypeVar("T")
OPEN_ATTEMPTS = 50


def open_wal(path: Path, schema: str, busy_timeout_ms: int, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """An autocommit connection to `path` (created if missing) in WAL mode, `synchronous=NORMAL`, with `schema`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    for attempt in range(OPEN_ATTEMPTS):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(schema)
            return connection
        except sqlite3.OperationalError as error:
            if not is_busy(error) or attempt == OPEN_ATTEMPTS - 1:
                connection.close()
                raise
            time.sleep(0.01 * (attempt + 1))  # another process is switching the file to WAL right now
    raise AssertionError("unreachable")


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_busy(error: sqlite3.Error) -> bool:
    """Another connection holds the lock this statement needs (by SQLite's error code, never its message)."""
    return getattr(error, "sqlite_errorcode", None) in _BUSY_CODES


class StoreThread:
    """One thread owning one connection, opened on first use by `opener`; `what` names the store in errors."""

    def __init__(self, what: str, path: Path, opener: Callable[[], sqlite3.Connection]) -> None:
        self._what = what
        self._path = path
        self._opener = opener
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=what.replace(" ", "-"))
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._opener()
        return self._connection

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """`operation(connection)` on the store's thread; a SQLite failure is `Unavailable` naming the store."""

        def run() -> T:
            try:
                return operation(self._db())
            except sqlite3.Error as exc:
                raise Unavailable(f"the {self._what} ({self._path}) failed: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def aclose(self) -> None:
        """Close the connection on its thread, then the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
