"""The frames of one stream waiting for its one writer.

A bounded FIFO with a single consumer: producers (the stream's requests) wait when it is full, which is how a
client that reads slowly slows its upstream calls down instead of making the gateway buffer without limit.
It is full at `limit` items, or (with `byte_limit`) once the items it holds reach `byte_limit` bytes: a client
that never reads cannot make it hold more than about `byte_limit` plus one item, however large the items.
It does what `asyncio.Queue` does for this one case, at a fraction of the per-frame cost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _no_size(item: object) -> int:
    return 0


class Outbox(Generic[T]):
    def __init__(self, limit: int, byte_limit: int | None = None, size: Callable[[T], int] = _no_size) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._byte_limit = byte_limit if byte_limit is not None else float("inf")
        self._size = size
        self._bytes = 0
        self._consumer: asyncio.Future[None] | None = None
        self._producers: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """The size of the items waiting, by `size`."""
        return self._bytes

    def _full(self) -> bool:
        return len(self._items) >= self._limit or self._bytes >= self._byte_limit

    async def put(self, item: T) -> None:
        """Append `item`, waiting while the outbox is full."""
        while self._full():
            waiter = asyncio.get_running_loop().create_future()
            self._producers.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Woken by `get` and cancelled before it could run: the slot it was given goes to the next
                    # producer, or that one would wait although there is room.
                    self._wake_producer()
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Append `item` even past the limit (for the few control items that must never wait)."""
        self._items.append(item)
        self._bytes += self._size(item)
        consumer = self._consumer
        if consumer is not None and not consumer.done():
            consumer.set_result(None)

    async def get(self) -> T:
        while not self._items:
            self._consumer = asyncio.get_running_loop().create_future()
            try:
                await self._consumer
            finally:
                self._consumer = None
        item = self._items.popleft()
        self._bytes -= self._size(item)
        if self._producers:  # tested here, not in the call: get is on every frame's path
            self._wake_producer()
        return item

    def _wake_producer(self) -> None:
        """Wake the oldest producer still waiting, if there is room for it."""
        while self._producers and not self._full():
            waiter = self._producers.popleft()
            if not waiter.done():  # a producer cancelled while waiting left its cancelled waiter behind
                waiter.set_result(None)
                break
