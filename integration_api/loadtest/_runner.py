"""Spreading a load run over client processes, so the load generator is not what a benchmark measures.

Each process runs one `LoadJob` (usually `GrpcLoad`, one share of a `LoadConfig`) in its own event loop. The
processes connect and open their streams, say they are ready, then all start together: the parent fixes one
measurement window (monotonic time, shared by every process on the machine) and sets a go event. Progress
counters live in shared memory; the final statistics come back through a queue and are merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from integration_api.loadtest._config import LoadConfig
from integration_api.loadtest._core import StartFn, run_load
from integration_api.loadtest._stats import LoadStats, Window

READY_TIMEOUT_S = 60.0
PUBLISH_INTERVAL_S = 0.1
ProgressFn = Callable[[int, int], None]  # (requests done, of which errors), warm-up included
MarkFn = Callable[[str], None]  # "start" when the window opens, "end" when it closes


class LoadJob(Protocol):
    """What one client process runs: picklable, and filling `stats` (its window comes from `start`)."""

    async def run(self, start: StartFn, stats: LoadStats) -> None: ...


@dataclass(frozen=True)
class GrpcLoad:
    """The gateway load generator as a job."""

    config: LoadConfig

    async def run(self, start: StartFn, stats: LoadStats) -> None:
        await run_load(self.config, start, stats)


def run_event_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def run_processes(
    jobs: Sequence[LoadJob],
    warmup_s: float,
    duration_s: float | None,
    *,
    on_progress: ProgressFn | None = None,
    on_mark: MarkFn | None = None,
) -> LoadStats:
    """Run each job in its own process, all in one window; return the merged statistics."""
    context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[tuple[Any, ...]] = context.Queue()
    go = context.Event()
    window = context.Array("q", [0, -1], lock=False)
    counters = context.Array("q", [0] * (2 * len(jobs)), lock=False)
    processes = [
        context.Process(target=_child, args=(job, index, messages, go, window, counters), daemon=True)
        for index, job in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    try:
        _wait_ready(messages, processes)
        opened = Window.after(warmup_s, duration_s)
        window[0], window[1] = opened.start_ns, -1 if opened.end_ns is None else opened.end_ns
        go.set()
        results = _collect(messages, processes, opened, counters, on_progress, on_mark)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    merged = LoadStats(window=opened)
    for result in results:
        merged.merge(result)
    return merged


def _wait_ready(messages: multiprocessing.Queue[tuple[Any, ...]], processes: list[Any]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = 0
    while ready < len(processes):
        message = _next_message(messages, processes, deadline)
        if message[0] == "error":
            raise RuntimeError(f"load process {message[1]} failed:\n{message[2]}")
        if message[0] == "ready":
            ready += 1


def _collect(
    messages: multiprocessing.Queue[tuple[Any, ...]],
    processes: list[Any],
    window: Window,
    counters: Any,
    on_progress: ProgressFn | None,
    on_mark: MarkFn | None,
) -> list[LoadStats]:
    # "start" and "end" of the window; a count-bound run's window ends with its last result.
    marks: list[tuple[int | None, str]] = [(window.start_ns, "start"), (window.end_ns, "end")]
    results: list[LoadStats] = []
    while len(results) < len(processes):
        while marks and (due := marks[0][0]) is not None and time.monotonic_ns() >= due:
            _mark(on_mark, marks.pop(0)[1])
        wait = PUBLISH_INTERVAL_S
        if marks and (due := marks[0][0]) is not None:
            wait = min(wait, max(0.0, (due - time.monotonic_ns()) / 1e9))
        try:
            message = messages.get(timeout=wait)
        except queue.Empty:
            _check_alive(processes)
        else:
            if message[0] == "error":
                raise RuntimeError(f"load process {message[1]} failed:\n{message[2]}")
            results.append(LoadStats.from_dict(message[2]))
        if on_progress is not None:
            on_progress(sum(counters[0::2]), sum(counters[1::2]))
    for _, name in marks:
        _mark(on_mark, name)
    return results


def _mark(on_mark: MarkFn | None, name: str) -> None:
    if on_mark is not None:
        on_mark(name)


def _next_message(
    messages: multiprocessing.Queue[tuple[Any, ...]], processes: list[Any], deadline: float
) -> tuple[Any, ...]:
    while True:
        try:
            return messages.get(timeout=0.2)
        except queue.Empty:
            _check_alive(processes)
            if time.monotonic() > deadline:
                raise TimeoutError(f"load processes not ready within {READY_TIMEOUT_S:.0f} s") from None


def _check_alive(processes: list[Any]) -> None:
    for index, process in enumerate(processes):
        if not process.is_alive() and process.exitcode not in (0, None):
            raise RuntimeError(f"load process {index} died with exit code {process.exitcode}")


def _child(
    job: LoadJob,
    index: int,
    messages: multiprocessing.Queue[tuple[Any, ...]],
    go: Any,
    window: Any,
    counters: Any,
) -> None:
    try:
        stats = LoadStats()
        run_event_loop(_child_run(job, index, messages, go, window, counters, stats))
        counters[2 * index], counters[2 * index + 1] = stats.done_all, stats.errors_all
        messages.put(("result", index, stats.to_dict()))
    except (ConnectionError, TimeoutError) as exc:  # expected failures need no traceback
        messages.put(("error", index, f"{type(exc).__name__}: {exc}"))
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))


async def _child_run(
    job: LoadJob,
    index: int,
    messages: multiprocessing.Queue[tuple[Any, ...]],
    go: Any,
    window: Any,
    counters: Any,
    stats: LoadStats,
) -> None:
    async def start() -> Window:
        messages.put(("ready", index))
        if not await asyncio.to_thread(go.wait, READY_TIMEOUT_S):
            raise TimeoutError("the parent process never started the run")
        return Window(int(window[0]), None if window[1] < 0 else int(window[1]))

    async def publish() -> None:
        while True:
            counters[2 * index], counters[2 * index + 1] = stats.done_all, stats.errors_all
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    publisher = asyncio.ensure_future(publish())
    try:
        await job.run(start, stats)
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
