"""The embedded stores' SQLite: opening a file in WAL mode safely beside other processes, and one thread per store.

Several processes may open one file at once (``serve --workers N``, replicas sharing the data directory, a CLI
command): switching a file to WAL and creating its tables can then meet another process doing the same, and
SQLite answers "database is locked" at once for those statements, whatever the busy timeout. `open_wal` retries
them. `StoreThread` runs every statement of an async store on one thread of its own that owns the connection, so
the event loop never waits on the disk and the connection is only ever used from that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

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
    """One thread owning one connection, opened on first use by `opener`; `what` names the store in errors.

    The thread takes jobs from a queue and answers each on the loop that sent it (`call_soon_threadsafe`): one
    wake-up each way, without an executor's futures around them. On this 2-core VM (2026-12-01) a session turn's
    write at 1 stream took 650 µs (p50, from the session layer) through ``run_in_executor`` on a one-worker
    pool, of which the UPDATE itself is ~40 µs, and 500 µs this way; bench row (s)/(s0) went from 0.89 to 0.93.
    A caller cancelled while its job runs does not stop the job; the answer is dropped.
    """

    def __init__(self, what: str, path: Path, opener: Callable[[], sqlite3.Connection]) -> None:
        self._what = what
        self._path = path
        self._opener = opener
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # started by the first job
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._opener()
        return self._connection

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            operation, future, loop = job
            try:
                try:
                    result = operation(self._db())
                except sqlite3.Error as exc:
                    raise Unavailable(f"the {self._what} ({self._path}) failed: {exc}") from exc
            except BaseException as error:  # the caller gets it (a bug in an operation too)
                _answer(loop, future, None, error)
            else:
                _answer(loop, future, result, None)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """`operation(connection)` on the store's thread; a SQLite failure is `Unavailable` naming the store."""
        if self._closed:
            raise Unavailable(f"the {self._what} ({self._path}) is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._what.replace(" ", "-"), daemon=True)
            self._thread.start()
        self._jobs.put((operation, future, loop))
        return await future

    async def aclose(self) -> None:
        """Finish the queued jobs, close the connection on its thread, end the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


_Job: TypeAlias = "tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]"


def _answer(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    def settle() -> None:
        if future.done():  # the caller was cancelled meanwhile: the job ran for nobody
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)
