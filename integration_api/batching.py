"""`Batcher`: many callers' writes to one store, sent as one write while the previous one is in flight.

A store that is written once per request (a session turn into SQLite, a rate-limit settlement into Redis) pays
a fixed cost per write: a thread hop and a transaction commit, or a command's packing and a round trip. Under
load, requests end close together; a batcher hands the store every item submitted while its previous write was
running, in one call, and gives each caller its own answer. Nothing waits for a batch to fill: a lone item is
written at once, so one request at a time sees no added latency, and at load a write costs what one batch does.

    batcher = Batcher(write_many)          # async (items) -> one answer per item, in order
    answer = await batcher.submit(item)    # raises what write_many raised, to every caller of that batch

Each caller awaits its batch's answer shielded: a caller cancelled meanwhile does not cancel the write (the
others still want it), and an item once submitted is written; its answer then goes to the caller's `abandoned`
callback, if it gave one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class _Batch(Generic[Item, Answer]):
    __slots__ = ("done", "items")

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.done: asyncio.Future[list[Answer]] = asyncio.get_running_loop().create_future()


class Batcher(Generic[Item, Answer]):
    """Coalesces `submit`ted items into calls of `write_many`, one call in flight at a time."""

    def __init__(self, write_many: Callable[[Sequence[Item]], Awaitable[Sequence[Answer]]]) -> None:
        self._write_many = write_many
        self._pending: _Batch[Item, Answer] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0  # calls of write_many so far (tests; a metric could read it)

    async def submit(self, item: Item, abandoned: Callable[[Answer], object] | None = None) -> Answer:
        """`item`'s answer. A caller cancelled before it came may pass `abandoned`: it gets the answer instead
        (to undo what the write did for nobody, e.g. release a slot acquired for a request that went away)."""
        batch = self._pending
        if batch is None:
            batch = self._pending = _Batch()
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._write())
        position = len(batch.items)
        batch.items.append(item)
        try:
            answers = await asyncio.shield(batch.done)
        except asyncio.CancelledError:
            if abandoned is not None and not batch.done.done():
                batch.done.add_done_callback(
                    lambda done: (
                        abandoned(done.result()[position])
                        if not done.cancelled() and done.exception() is None
                        else None
                    )
                )
            raise
        return answers[position]

    async def _write(self) -> None:
        """Write batches until none is waiting (one fills while the previous one is being written)."""
        batch: _Batch[Item, Answer] | None = None
        try:
            while (batch := self._pending) is not None:
                self._pending = None
                self.writes += 1
                try:
                    answers = list(await self._write_many(batch.items))
                except Exception as error:
                    batch.done.set_exception(error)
                    batch.done.exception()  # retrieved: a batch whose callers were all cancelled logs nothing
                else:
                    if len(answers) != len(batch.items):
                        raise AssertionError(f"{len(batch.items)} items written, {len(answers)} answers")
                    batch.done.set_result(answers)
        finally:
            self._writer = None
            for waiting in (batch, self._pending):  # cancelled (the loop is closing): nobody waits forever
                if waiting is not None and not waiting.done.done():
                    waiting.done.cancel()

    async def aclose(self) -> None:
        """Wait for the write in flight and the batch after it (the callers already submitted)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
