"""`Batcher`: a lone item is written at once; items submitted during a write go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from integration_api.batching import Batcher


class GatedStore:
    """A store whose writes wait for the test to open a gate: what is submitted meanwhile must wait too."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail_next = False

    async def write_many(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the store went away")
        return [item * 10 for item in items]


async def wait_for_calls(store: GatedStore, count: int) -> None:
    async with asyncio.timeout(5):
        while len(store.calls) < count:
            await asyncio.sleep(0)


async def test_a_lone_item_is_written_at_once() -> None:
    store = GatedStore()
    store.gate.set()
    batcher = Batcher(store.write_many)
    assert await batcher.submit(4) == 40
    assert store.calls == [[4]]


async def test_items_submitted_during_a_write_are_written_together_next() -> None:
    store = GatedStore()
    batcher = Batcher(store.write_many)
    first = asyncio.ensure_future(batcher.submit(1))
    await wait_for_calls(store, 1)
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert store.calls == [[1]]  # the three wait for the write in flight
    store.gate.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]  # each caller gets its own answer
    assert store.calls == [[1], [2, 3, 4]] and batcher.writes == 2


async def test_a_failed_write_fails_its_callers_only() -> None:
    store = GatedStore()
    batcher = Batcher(store.write_many)
    store.fail_next = True
    doomed = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
    await wait_for_calls(store, 1)
    store.gate.set()
    for caller in doomed:
        with pytest.raises(ConnectionError):
            await caller
    assert await batcher.submit(3) == 30  # the next batch is written as usual


async def test_a_cancelled_caller_does_not_cancel_the_write() -> None:
    store = GatedStore()
    batcher = Batcher(store.write_many)
    quitter = asyncio.ensure_future(batcher.submit(1))
    stayer = asyncio.ensure_future(batcher.submit(2))
    await wait_for_calls(store, 1)
    quitter.cancel()
    store.gate.set()
    assert await stayer == 20
    assert quitter.cancelled() and store.calls == [[1, 2]]  # 1 was written all the same
    await batcher.aclose()


async def test_the_answer_of_a_cancelled_caller_goes_to_its_abandoned_callback() -> None:
    store = GatedStore()
    batcher = Batcher(store.write_many)
    seen: list[int] = []
    quitter = asyncio.ensure_future(batcher.submit(7, seen.append))
    await wait_for_calls(store, 1)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert seen == []  # not written yet
    store.gate.set()
    await batcher.aclose()
    assert seen == [70]
