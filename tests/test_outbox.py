"""The stream's outbox: FIFO, bounded for producers, never blocking control items."""

from __future__ import annotations

import asyncio

from integration_api.outbox import Outbox


async def test_fifo_and_backpressure() -> None:
    outbox: Outbox[int] = Outbox(limit=2)
    await outbox.put(1)
    await outbox.put(2)
    blocked = asyncio.ensure_future(outbox.put(3))
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(outbox) == 2
    assert await outbox.get() == 1
    await asyncio.wait_for(blocked, 1)
    outbox.put_nowait(4)  # past the limit: control items never wait
    assert [await outbox.get() for _ in range(3)] == [2, 3, 4]


async def test_consumer_waits_for_items() -> None:
    outbox: Outbox[str] = Outbox(limit=1)
    getter = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    await outbox.put("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_a_cancelled_producer_does_not_lose_the_next_wakeup() -> None:
    outbox: Outbox[int] = Outbox(limit=1)
    await outbox.put(0)
    cancelled = asyncio.ensure_future(outbox.put(1))
    waiting = asyncio.ensure_future(outbox.put(2))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    assert await outbox.get() == 0
    await asyncio.wait_for(waiting, 1)
    assert await outbox.get() == 2
