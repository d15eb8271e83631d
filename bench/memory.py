"""Memory per idle stream: N authenticated StreamChat streams held open, no request sent, against one server.

Client processes each open a share of the streams over channels of at most 100 streams (each channel its own
connection), and wait until every stream's headers are sent. The server's RSS is read once it is steady before
the streams open (after a short warm-up load) and once it is steady with all of them open; the difference over
N is the memory per idle stream. A sample of the streams then sends one request each, to prove they were live.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench.procs import ServerProcess
from integration_api.loadtest import (
    GrpcLoad,
    LoadConfig,
    open_channel,
    request_template,
    run_event_loop,
    run_processes,
    stream_chat_method,
    with_request_id,
)

STREAMS_PER_CHANNEL = 100
OPEN_BATCH = 50
OPEN_RATE = 2_000  # new streams per second, all holders together: a rate the servers accept without refusals
REPAIR_ROUNDS = 10
REPAIR_WAIT_S = 0.5
VERIFY_EVERY = 20  # one stream in 20 sends a request at the end
PHASE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Holder:
    config: LoadConfig  # target, metadata, request; `streams` is this process's share
    index: int
    holders: int


def measure_idle_memory(
    server: ServerProcess, config: LoadConfig, streams: int, processes: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Open `streams` idle streams on `server` from `processes` client processes; RSS per stream in KiB."""
    warm = dataclasses.replace(config, streams=20, count=400, duration_s=None)
    run_processes([GrpcLoad(warm)], 0.0, None)
    before = steady_rss_kb(server)
    log(f"  {server.name} warmed up: RSS {before / 1024:.1f} MiB")
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    verify, close = context.Event(), context.Event()
    shares = [streams // processes + (1 if i < streams % processes else 0) for i in range(processes)]
    holders = [
        context.Process(
            target=_hold_main,
            args=(Holder(dataclasses.replace(config, streams=share), i, processes), messages, verify, close),
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    for process in holders:
        process.start()
    try:
        log(f"  opening {streams:,} streams from {processes} processes")
        opened_by_holder = _gather(messages, "open", len(holders))
        opened = sum(n for n, _ in opened_by_holder)
        reopened = sum(r for _, r in opened_by_holder)
        log(f"  {opened:,} idle streams open on {server.name} ({reopened} reopened); waiting for memory to settle")
        settle = time.monotonic()
        after = steady_rss_kb(server)
        log(f"  settled in {time.monotonic() - settle:.1f} s")
        verify.set()
        answered = sum(n for n, _ in _gather(messages, "verified", len(holders)))
        close.set()
    finally:
        close.set()
        for process in holders:
            process.join(10)
            if process.is_alive():
                process.kill()
    sampled = sum(math.ceil(share / VERIFY_EVERY) for share in shares)
    return {
        "server": server.name,
        "streams": opened,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_stream": (after - before) / max(opened, 1),
        "reopened": reopened,
        "verified": f"{answered}/{sampled}",
    }


def steady_rss_kb(server: ServerProcess, settle_s: float = 1.5, timeout_s: float = 30.0) -> int:
    """The server's RSS once it has stopped moving (within 0.2%) for `settle_s`."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now, rss = time.monotonic(), server.rss_kb()
        samples.append((now, rss))
        recent = [r for t, r in samples if now - t <= settle_s]
        if now - samples[0][0] >= settle_s and max(recent) - min(recent) <= max(512, rss // 500):
            return rss
        time.sleep(0.25)
    return server.rss_kb()


def _gather(messages: Any, kind: str, count: int) -> list[tuple[int, int]]:
    values: list[tuple[int, int]] = []
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while len(values) < count:
        try:
            message = messages.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"idle-stream holders: no '{kind}' within {PHASE_TIMEOUT_S:.0f} s") from None
        if message[0] == "error":
            raise RuntimeError(f"idle-stream holder {message[1]} failed: {message[2]}")
        if message[0] == kind:
            values.append((int(message[2]), int(message[3])))
    return values


def _hold_main(holder: Holder, messages: Any, verify: Any, close: Any) -> None:
    try:
        run_event_loop(_hold(holder, messages, verify, close))
    except BaseException as exc:
        messages.put(("error", holder.index, repr(exc)))


async def _hold(holder: Holder, messages: Any, verify: Any, close: Any) -> None:
    config = holder.config
    channel_count = math.ceil(config.streams / STREAMS_PER_CHANNEL)
    channels = [open_channel(config, holder.index * 10_000 + i) for i in range(channel_count)]
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
        methods = [stream_chat_method(c) for c in channels]
        calls, reopened = await _open_all(methods, config, holder.holders)
        messages.put(("open", holder.index, sum(not call.done() for call in calls), reopened))
        await asyncio.to_thread(verify.wait, PHASE_TIMEOUT_S)
        template = request_template(config)
        sample = calls[::VERIFY_EVERY]
        answers = await asyncio.gather(*(_ask(call, template, i) for i, call in enumerate(sample)))
        messages.put(("verified", holder.index, sum(answers), 0))
        await asyncio.to_thread(close.wait, PHASE_TIMEOUT_S)
        for call in calls:
            call.cancel()
    finally:
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


async def _open_all(methods: list[Any], config: LoadConfig, holders: int) -> tuple[list[Any], int]:
    """Open the streams in paced batches, then reopen those the server refused.

    A grpc server rejects some new calls (CANCELLED) while more than ``grpc.server.max_pending_requests``
    (default 1,000) are waiting for the application to accept them; thousands of streams opened at once do that.
    """

    def open_one(index: int) -> Any:
        return methods[index // STREAMS_PER_CHANNEL](metadata=config.metadata)

    calls: list[Any] = []
    for first in range(0, config.streams, OPEN_BATCH):
        batch = [open_one(i) for i in range(first, min(first + OPEN_BATCH, config.streams))]
        await asyncio.gather(*(call.wait_for_connection() for call in batch), return_exceptions=True)
        calls += batch
        await asyncio.sleep(OPEN_BATCH * holders / OPEN_RATE)
    reopened = 0
    for _ in range(REPAIR_ROUNDS):
        await asyncio.sleep(REPAIR_WAIT_S)
        refused = [i for i, call in enumerate(calls) if call.done()]
        if not refused:
            break
        for i in refused:
            calls[i] = open_one(i)
        reopened += len(refused)
        await asyncio.gather(*(calls[i].wait_for_connection() for i in refused), return_exceptions=True)
    return calls, reopened


async def _ask(call: Any, template: bytes, index: int) -> bool:
    """Send one request on a held stream; True when its terminal frame says it succeeded."""
    try:
        async with asyncio.timeout(30):
            await call.write(with_request_id(template, f"verify-{index}"))
            while (frame := await call.read()) is not grpc.aio.EOF:
                if frame.final:
                    return bool(frame.success)
    except (grpc.RpcError, TimeoutError):
        return False
    return False
