"""The load generator: streams over channels, lanes of requests on each stream, frames matched by requestId.

`run_load` opens `config.streams` StreamChat streams (at most `streams_per_channel` per channel, each channel its
own connection) and runs `concurrency_per_stream` lanes on each: a lane sends a request, waits for its terminal
frame, sends the next. One reader per stream routes frames to their request by id and records, per request, the
time to its first frame and to its terminal frame, its frames and output tokens, or its error code. A stream that
fails is reopened (after a short pause) unless the failure is one a retry cannot fix, like UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from integration_api.loadtest._config import LoadConfig
from integration_api.loadtest._requests import (
    cancel_request,
    open_channel,
    request_template,
    stream_chat_method,
    with_request_id,
)
from integration_api.loadtest._stats import Budget, LoadStats, Window
from integration_api.proto import integration_api_pb2 as pb

StartFn = Callable[[], Awaitable[Window]]

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0
REOPEN_DELAY_S = 0.1
FATAL_STREAM_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "UNIMPLEMENTED", "INVALID_ARGUMENT"})
TIMEOUT_CODE = "client TIMEOUT"


def error_code(frame: pb.ChatResponse) -> str:
    """How an error frame is counted: its HTTP-like code and status name, e.g. "503 UNAVAILABLE"."""
    status = frame.error.status if frame.HasField("error") else ""
    return f"{frame.code} {status}".strip()


class _Pending:
    __slots__ = ("first_ns", "frames", "future", "start_ns", "timer")

    def __init__(self, future: asyncio.Future[None], start_ns: int) -> None:
        self.future = future
        self.start_ns = start_ns
        self.first_ns = 0
        self.frames = 0
        self.timer: asyncio.TimerHandle | None = None


class _Stream:
    """One StreamChat call: requests written under a lock, one reader routing frames to pending requests."""

    def __init__(self, method: grpc.aio.StreamStreamMultiCallable, config: LoadConfig, stats: LoadStats) -> None:
        self.call: Any = method(metadata=config.metadata)
        self.stats = stats
        self.timeout_s = config.request_timeout_s
        self.pending: dict[str, _Pending] = {}
        self.failure: str | None = None
        self.closing = False
        self._lock = asyncio.Lock()
        self._cancels: set[asyncio.Future[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.reader = asyncio.ensure_future(self._read())

    async def exchange(self, request_id: str, payload: bytes) -> None:
        """Send one request and wait for its terminal frame (or its failure); the outcome goes to the stats."""
        pending = _Pending(self._loop.create_future(), time.monotonic_ns())
        pending.timer = self._loop.call_later(self.timeout_s, self._expire, request_id)
        self.pending[request_id] = pending
        try:
            async with self._lock:
                await self.call.write(payload)
        except (grpc.RpcError, asyncio.InvalidStateError):
            # The stream has ended: its reader learns the status and fails every pending request with it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.reader), CLOSE_TIMEOUT_S)
            self._fail(request_id, self.failure or "stream WRITE_FAILED")
        await pending.future

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
            await self.call.done_writing()
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.call.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    async def _read(self) -> None:
        failure = "stream ENDED"
        try:
            while (frame := await self.call.read()) is not grpc.aio.EOF:
                self._on_frame(frame)
        except grpc.RpcError as error:
            failure = f"stream {error.code().name}"
        finally:
            self.failure = failure
            if self.pending:
                for request_id in list(self.pending):
                    self._fail(request_id, failure)
            elif not self.closing:
                self.stats.record_error(failure, time.monotonic_ns())

    def _on_frame(self, frame: pb.ChatResponse) -> None:
        pending = self.pending.get(frame.requestId)
        if pending is None:
            return  # a late frame of a request that timed out
        pending.frames += 1
        if pending.first_ns and not frame.final:
            return
        now = time.monotonic_ns()
        if not pending.first_ns:
            pending.first_ns = now
        if not frame.final:
            return
        del self.pending[frame.requestId]
        if frame.success:
            tokens = frame.usage.outputTokens if frame.HasField("usage") else pending.frames - 1
            self.stats.record_success(pending.start_ns, pending.first_ns, now, pending.frames, tokens)
        else:
            self.stats.record_error(error_code(frame), now)
        self._settle(pending)

    def _fail(self, request_id: str, code: str) -> None:
        pending = self.pending.pop(request_id, None)
        if pending is not None:
            self.stats.record_error(code, time.monotonic_ns())
            self._settle(pending)

    def _expire(self, request_id: str) -> None:
        if request_id in self.pending:
            self._fail(request_id, TIMEOUT_CODE)
            cancel = asyncio.ensure_future(self._cancel(request_id))
            self._cancels.add(cancel)
            cancel.add_done_callback(self._cancels.discard)

    async def _cancel(self, request_id: str) -> None:
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
            async with self._lock:
                await self.call.write(cancel_request(request_id))

    @staticmethod
    def _settle(pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        if not pending.future.done():
            pending.future.set_result(None)


class _Slot:
    """One of the run's streams, reopened when it fails for a reason a new stream may not have."""

    def __init__(self, index: int, method: grpc.aio.StreamStreamMultiCallable, config: LoadConfig) -> None:
        self.index = index
        self.method = method
        self.config = config
        self.stream: _Stream | None = None
        self.ids = itertools.count()
        self.remaining = config.requests_per_stream

    def open(self, stats: LoadStats) -> None:
        self.stream = _Stream(self.method, self.config, stats)

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    async def live(self, stats: LoadStats) -> _Stream | None:
        stream = self.stream
        assert stream is not None
        if stream.failure is None:
            return stream
        if stream.failure.removeprefix("stream ") in FATAL_STREAM_CODES:
            return None
        if self.stream is stream:
            self.open(stats)
        await asyncio.sleep(REOPEN_DELAY_S)  # a server refusing streams is not hammered
        return self.stream


async def _lane(slot: _Slot, budget: Budget, template: bytes, stats: LoadStats) -> None:
    while slot.take() and budget.take():
        stream = await slot.live(stats)
        if stream is None:
            return
        request_id = f"{slot.index}-{next(slot.ids)}"
        await stream.exchange(request_id, with_request_id(template, request_id))


async def _connect(channel: grpc.aio.Channel, target: str) -> None:
    try:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise ConnectionError(f"could not connect to {target} within {CONNECT_TIMEOUT_S:.0f} s") from None


async def meter_cpu(window: Window, stats: LoadStats, finished: asyncio.Event) -> None:
    """This process's CPU time (every thread, user + system) over the window."""
    await asyncio.sleep(max(0.0, (window.start_ns - time.monotonic_ns()) / 1e9))
    begin = time.process_time()
    remaining = math.inf if window.end_ns is None else (window.end_ns - time.monotonic_ns()) / 1e9
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), None if remaining == math.inf else max(remaining, 0.0))
    stats.client_cpu_s = time.process_time() - begin


async def run_load(config: LoadConfig, start: StartFn | None = None, stats: LoadStats | None = None) -> LoadStats:
    """Run the load `config` describes and return what it measured.

    `start` is awaited once every stream is open and returns the measurement window (default: the warm-up, then
    the duration, from now); client processes use it to start together.
    """
    stats = stats if stats is not None else LoadStats()
    channel_count = math.ceil(config.streams / config.streams_per_channel)
    channels = [open_channel(config, index) for index in range(channel_count)]
    try:
        await asyncio.gather(*(_connect(channel, config.target) for channel in channels))
        methods = [stream_chat_method(channel) for channel in channels]
        slots = [_Slot(i, methods[i // config.streams_per_channel], config) for i in range(config.streams)]
        for slot in slots:
            slot.open(stats)
        window = await start() if start is not None else Window.after(config.warmup_s, config.effective_duration_s)
        stats.window = window
        budget = Budget(window, config.count)
        template = request_template(config)
        finished = asyncio.Event()
        meter = asyncio.ensure_future(meter_cpu(window, stats, finished))
        lanes = [_lane(slot, budget, template, stats) for slot in slots for _ in range(config.concurrency_per_stream)]
        await asyncio.gather(*lanes)
        finished.set()
        await meter
        await asyncio.gather(*(slot.stream.close() for slot in slots if slot.stream is not None))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)
    return stats
