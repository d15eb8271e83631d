"""The stream's outbox: FIFO, bounded for producers, never blocking control items.

No test sleeps: each blocked producer or consumer is started through `_blocked`, which returns once the coroutine
has run up to its first wait (it signals an event and then calls the outbox in the same step, so by the time the
test resumes it is parked on its waiter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from integration_api.outbox import Outbox

T = TypeVar("T")


async def _blocked(call: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
    started = asyncio.Event()

    async def run() -> T:
        started.set()
        return await call()  # runs up to its wait before the test (woken by `started`) can resume

    task = asyncio.ensure_future(run())
    await started.wait()
    return task


async def test_fifo_and_backpressure() -> None:
    outbox: Outbox[int] = Outbox(limit=2)
    await outbox.put(1)
    await outbox.put(2)
    blocked = await _blocked(lambda: outbox.put(3))
    assert not blocked.done() and len(outbox) == 2
    assert await outbox.get() == 1
    await asyncio.wait_for(blocked, 1)
    outbox.put_nowait(4)  # past the limit: control items never wait
    assert [await outbox.get() for _ in range(3)] == [2, 3, 4]


async def test_consumer_waits_for_items() -> None:
    outbox: Outbox[str] = Outbox(limit=1)
    getter = await _blocked(outbox.get)
    assert not getter.done()
    await outbox.put("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_a_cancelled_producer_does_not_lose_the_next_wakeup() -> None:
    outbox: Outbox[int] = Outbox(limit=1)
    await outbox.put(0)
    cancelled = await _blocked(lambda: outbox.put(1))
    waiting = await _blocked(lambda: outbox.put(2))
    cancelled.cancel()
    assert await outbox.get() == 0
    await asyncio.wait_for(waiting, 1)
    assert await outbox.get() == 2


async def test_a_producer_cancelled_after_its_wakeup_passes_it_on() -> None:
    outbox: Outbox[int] = Outbox(limit=1)
    await outbox.put(0)
    woken = await _blocked(lambda: outbox.put(1))
    waiting = await _blocked(lambda: outbox.put(2))
    assert await outbox.get() == 0  # frees the one slot and wakes `woken`...
    woken.cancel()  # ...which is cancelled before it runs: the slot must go to `waiting`
    with contextlib.suppress(asyncio.CancelledError):
        await woken
    assert woken.cancelled()
    await asyncio.wait_for(waiting, 1)
    assert await outbox.get() == 2


async def test_a_byte_limit_bounds_what_an_unread_outbox_holds() -> None:
    outbox: Outbox[bytes] = Outbox(limit=100, byte_limit=10, size=len)
    await outbox.put(b"x" * 8)
    await outbox.put(b"y" * 8)  # 8 < 10 bytes held: one more item fits, however large
    assert outbox.bytes == 16
    blocked = await _blocked(lambda: outbox.put(b"z"))
    assert not blocked.done() and len(outbox) == 2
    assert await outbox.get() == b"x" * 8
    await asyncio.wait_for(blocked, 1)
    assert outbox.bytes == 9 and len(outbox) == 2
