"""`UsageLog`: records are written in batches (full batch at once, a partial one after the flush interval), never
one write at a time under load, kept and retried when the store fails, and all written by `aclose`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from integration_api.errors import Unavailable
from integration_api.usage import UsageLog, UsageQuery, UsageRecord, UsageRow, UsageStore


def record(index: int) -> UsageRecord:
    return UsageRecord(
        1.0, f"r{index}", "s", "org", "proj", None, None, "api_key", "StreamChat", "simulated", "", "OK", 200
    )


class MemoryStore(UsageStore):
    """A store in a list, whose writes can be made to fail or to wait (a fake, not a mock)."""

    def __init__(self) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.failures = 0  # the next this many writes fail
        self.gate: asyncio.Event | None = None  # when set, writes wait for it
        self.written = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        pass

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise Unavailable("the database is down")
        self.batches.append(list(records))
        self.written.set()

    async def summarize(self, query: UsageQuery) -> list[UsageRow]:
        return []

    async def recent(self, limit: int = 100) -> list[UsageRecord]:
        return [r for batch in self.batches for r in batch][-limit:][::-1]

    async def count(self) -> int:
        return sum(len(batch) for batch in self.batches)

    async def aclose(self) -> None:
        self.closed = True

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while await self.count() < count:
                self.written.clear()
                await self.written.wait()


async def test_a_full_batch_is_written_at_once_and_the_rest_after_the_interval() -> None:
    store = MemoryStore()
    log = UsageLog(store, batch_size=10, flush_interval_s=3600)  # the interval never passes in this test
    for index in range(25):
        log.record(record(index))
    await store.wait_for(20)
    assert [len(batch) for batch in store.batches] == [10, 10] and log.pending == 5
    await log.aclose()
    assert [len(batch) for batch in store.batches] == [10, 10, 5] and store.closed
    assert [r.request_id for batch in store.batches for r in batch] == [f"r{i}" for i in range(25)]


async def test_a_partial_batch_waits_for_the_flush_interval() -> None:
    store = MemoryStore()
    log = UsageLog(store, batch_size=1000, flush_interval_s=0.05)
    log.record(record(1))
    log.record(record(2))
    assert store.batches == []  # nothing is written on the request's path
    await store.wait_for(2)
    assert [len(batch) for batch in store.batches] == [2]
    await log.aclose()


async def test_records_arriving_during_a_write_go_in_the_next_one() -> None:
    store = MemoryStore()
    store.gate = asyncio.Event()
    log = UsageLog(store, batch_size=3, flush_interval_s=3600)
    for index in range(3):
        log.record(record(index))  # a full batch: its write starts and waits at the gate
    await asyncio.sleep(0)
    for index in range(3, 5):
        log.record(record(index))
    store.gate.set()
    await store.wait_for(3)
    await log.aclose()
    assert [len(batch) for batch in store.batches] == [3, 2]


async def test_a_failed_write_is_retried_and_loses_nothing() -> None:
    store = MemoryStore()
    store.failures = 2
    log = UsageLog(store, batch_size=4, flush_interval_s=0.01)
    for index in range(6):
        log.record(record(index))
    await store.wait_for(6)
    assert [r.request_id for batch in store.batches for r in batch] == [f"r{i}" for i in range(6)]
    assert log.dropped == 0
    await log.aclose()


async def test_a_store_that_stays_down_drops_the_oldest_beyond_the_bound() -> None:
    store = MemoryStore()
    store.failures = 10**6
    log = UsageLog(store, batch_size=2, flush_interval_s=3600)
    log.max_pending = 5
    for index in range(9):
        log.record(record(index))
        await asyncio.sleep(0)  # let each full batch's write fail
    await log.aclose()
    assert log.dropped == 9 and store.batches == [] and store.closed


async def test_records_after_close_are_counted_as_dropped() -> None:
    store = MemoryStore()
    log = UsageLog(store)
    await log.aclose()
    log.record(record(1))
    assert log.dropped == 1 and store.batches == []
    await log.aclose()  # closing twice is harmless
