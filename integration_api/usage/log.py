"""`UsageLog`: the in-memory buffer between the request path and the usage store, written in batches.

`record` only appends to a list (the request path never waits on a database). A batch is written when
``usage_batch_size`` records are pending, or ``usage_flush_interval_s`` after the oldest pending record arrived,
whichever comes first; while a write runs, new records wait for the next one, so under load each write carries
everything that arrived during the previous one (at most a batch). No task runs while nothing is pending.

`aclose` (the server calls it after the drain, when no request can end any more) writes every pending record,
so SIGTERM loses none. A kill -9 loses what was pending: at most one flush interval of records (README, "Usage
log", has the measured figure). A failed write keeps its records and is retried after one interval; beyond
`max_pending` records the oldest are dropped and counted (`dropped`), so a database that stays down cannot
exhaust memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from integration_api.errors import GatewayError
from integration_api.usage.record import UsageRecord
from integration_api.usage.store import UsageStore

logger = logging.getLogger(__name__)
MAX_PENDING_BATCHES = 200  # pending records kept while the store fails: this many batches


class UsageLog:
    def __init__(self, store: UsageStore, *, batch_size: int = 500, flush_interval_s: float = 1.0) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = MAX_PENDING_BATCHES * batch_size
        self.written = 0  # records the store accepted
        self.dropped = 0  # records given up on (the store failed for too long)
        self._pending: deque[UsageRecord] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._everything = False  # the writer writes partial batches too (the interval passed, or a flush)
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        """Connect the store now (and migrate its schema), so that a bad database stops the server at start-up."""
        await self.store.start()

    def record(self, record: UsageRecord) -> None:
        """Queue one record (on the event loop; never blocks)."""
        if self._closed:
            logger.error("usage record of request %r arrived after the usage log closed", record.request_id)
            self.dropped += 1
            return
        self._pending.append(record)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream closed by the garbage collector after its loop ended: kept for `aclose`
            return
        if len(self._pending) >= self.batch_size:
            self._write_soon()
        elif self._timer is None and self._writer is None:
            self._timer = loop.call_later(self.flush_interval_s, self._write_all_soon)

    def _write_soon(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_pending(), name="usage-log-writer")

    def _write_all_soon(self) -> None:
        """The flush interval passed: write everything pending, not only full batches (a running writer goes on)."""
        self._timer = None
        self._everything = True
        self._write_soon()

    async def _write_pending(self) -> None:
        try:
            while len(self._pending) >= (1 if self._everything else self.batch_size):
                count = min(len(self._pending), self.batch_size)
                batch = [self._pending.popleft() for _ in range(count)]
                try:
                    await self.store.write(batch)
                except GatewayError as error:
                    self._pending.extendleft(reversed(batch))  # oldest first again, retried after an interval
                    self._shed()
                    logger.error("usage log: writing %d records failed (%s); retrying", len(batch), error.message)
                    break
                self.written += count
            else:
                self._everything = False
        finally:
            self._writer = None
        if self._pending and self._timer is None and not self._closed:  # what is left waits for the interval
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval_s, self._write_all_soon)

    def _shed(self) -> None:
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.dropped += excess
            logger.error("usage log: the store keeps failing; dropped the %d oldest unwritten records", excess)

    async def flush(self) -> None:
        """Write every pending record now (returns when the store has them, or after a failed attempt)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._everything = True
        self._write_soon()
        while self._writer is not None:
            await asyncio.shield(self._writer)
        if self._timer is not None:  # the write failed, and set a timer to retry: the caller decides instead
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        """Write everything pending, then close the store (once; again is a no-op). Records arriving afterwards are
        refused (and counted)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush()
            if self._pending:  # the last attempt failed: one more, then give up loudly
                await self.flush()
            if self._pending:
                self.dropped += len(self._pending)
                logger.error("usage log: %d records could not be written before shutdown", len(self._pending))
                self._pending.clear()
        finally:
            await self.store.aclose()
