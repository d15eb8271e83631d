"""The gRPC scenarios of a level measured in turns: every server, the same client processes, one turn each.

Measuring one scenario's window after another's compares moments as much as servers on this shared VM: how
long a wake-up takes changes from one window to the next with no steal to show for it (two windows of (b) at 1
stream a few seconds apart: 254 and 397 req/s), so the ratio of two windows measured one after the other
wandered over 0.66-0.90 across rounds for a pair whose true ratio is near 0.9. Here the client processes hold
the level's streams to every scenario's server at once, and all of them load one server for a short turn, then
the next, round after round, until each scenario has had about one window of measured time: every scenario
samples the same seconds of the machine, and a ratio of two of them compares the servers.

A turn (`Turns`) is short: at 1 stream 0.1 s (about 30 requests), at 50 streams 1 s. Its first part is not
counted (`settle_s`: it wakes a server that rested meanwhile and fills its streams), and a gap after it lets its
last requests finish before the next server's turn begins. The client processes keep the turns together by the
clock: every turn starts at a fixed monotonic time. Only requests completing inside a turn's counted part count,
as in a window; a scenario's requests/s is its counted requests over its counted time. CPU per request: the
server's CPU (read from /proc/<pid>/stat at each counted part's start and end by the first client process) and
each client process's own over the counted parts only. Other and steal CPU % are the machine's over the whole
measurement, the same for every row of it. The first round of turns warms every server up and is not counted.

Scenarios opt in with `Scenario.interleaved`: their jobs are `GrpcLoad` or `bench.sessions.SessionLoad`, and
their server is one process (its CPU is read without its descendants).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import queue
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from bench.procs import machine_busy_seconds, process_cpu_seconds, steal_seconds
from bench.sessions import SessionLoad
from integration_api.loadtest import GrpcLoad, LoadConfig, LoadJob
from integration_api.loadtest._core import _connect, _Stream
from integration_api.loadtest._requests import open_channel, request_template, stream_chat_method, with_request_id
from integration_api.loadtest._runner import run_event_loop
from integration_api.loadtest._stats import LoadStats, Window

READY_TIMEOUT_S = 60.0
START_DELAY_S = 0.2  # after every client process is ready: the first turn's start
RESULT_TIMEOUT_S = 60.0  # beyond the schedule's end


@dataclass(frozen=True)
class Turns:
    """How long a turn is, and how much of it counts."""

    turn_s: float
    settle_s: float  # the turn's start, not counted
    gap_s: float  # between a turn's end and the next one's start

    @classmethod
    def for_streams(cls, streams: int) -> Turns:
        return cls(0.1, 0.015, 0.02) if streams == 1 else cls(1.0, 0.25, 0.25)

    @property
    def counted_s(self) -> float:
        return self.turn_s - self.settle_s

    def rounds(self, duration_s: float) -> int:
        """Counted rounds of turns giving each scenario about `duration_s` of measured time."""
        return max(1, math.ceil(duration_s / self.counted_s))


@dataclass(frozen=True)
class Lane:
    """One scenario: its jobs (one per client process) and the processes whose CPU its row reports."""

    key: str
    jobs: tuple[LoadJob, ...]
    server_pid: int
    upstream_pid: int | None = None


@dataclass
class _Measured:
    server_cpu_s: float = 0.0
    upstream_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


@dataclass(frozen=True)
class _Schedule:
    start_ns: int
    turns: Turns
    lanes: int
    rounds: int  # counted rounds; one more, first, warms up

    def turn(self, number: int) -> tuple[int, Window | None]:
        """(when turn `number` starts, its counted window or None for a warm-up turn)."""
        period = int((self.turns.turn_s + self.turns.gap_s) * 1e9)
        start = self.start_ns + number * period
        if number < self.lanes:
            return start, None
        return start, Window(start + int(self.turns.settle_s * 1e9), start + int(self.turns.turn_s * 1e9))

    @property
    def count(self) -> int:
        return self.lanes * (self.rounds + 1)


class _LaneStreams:
    """One lane's streams in one client process, and what its counted parts measured."""

    def __init__(self, key: str, config: LoadConfig, channels: list[grpc.aio.Channel], templates: list[bytes]) -> None:
        self.key = key
        self.channels = channels
        self.templates = templates
        self.stats = LoadStats(window=Window(0, 0))  # nothing counts until a counted turn opens its window
        methods = [stream_chat_method(channel) for channel in channels]
        per_channel = config.streams_per_channel
        self.streams = [_Stream(methods[i // per_channel], config, self.stats) for i in range(len(templates))]
        self.measured = _Measured()
        self._ids = 0

    @classmethod
    async def open(cls, key: str, job: LoadJob) -> _LaneStreams:
        config = _config(job)
        channels = [
            open_channel(config, index) for index in range(math.ceil(config.streams / config.streams_per_channel))
        ]
        await asyncio.gather(*(_connect(channel, config.target) for channel in channels))
        templates = []
        for index in range(config.streams):
            channel = channels[index // config.streams_per_channel]
            templates.append(
                await job.stream_template(channel) if isinstance(job, SessionLoad) else request_template(config)
            )
        return cls(key, config, channels, templates)

    async def _lane(self, index: int, end_ns: int) -> None:
        stream, template = self.streams[index], self.templates[index]
        while time.monotonic_ns() < end_ns and stream.failure is None:
            request_id = f"{self.key}-{index}-{self._ids}"
            self._ids += 1
            await stream.exchange(request_id, with_request_id(template, request_id))

    async def turn(self, end_ns: int) -> None:
        """Every stream sends request after request until `end_ns`; returns when the last one has finished."""
        await asyncio.gather(*(self._lane(index, end_ns) for index in range(len(self.streams))))

    async def close(self) -> None:
        await asyncio.gather(*(stream.close() for stream in self.streams))
        await asyncio.gather(*(channel.close() for channel in self.channels), return_exceptions=True)


def _config(job: LoadJob) -> LoadConfig:
    if not isinstance(job, GrpcLoad | SessionLoad):
        raise TypeError(f"{type(job).__name__} cannot be interleaved: only GrpcLoad and SessionLoad jobs")
    return job.config


async def _sleep_until(at_ns: int) -> None:
    await asyncio.sleep(max(0.0, (at_ns - time.monotonic_ns()) / 1e9))


async def _count(lane: _LaneStreams, window: Window, pids: tuple[int, int | None] | None) -> None:
    """At `window`'s start and end, this process's CPU (and with `pids` the server's and upstream's) into `lane`."""
    await _sleep_until(window.start_ns)
    client = time.process_time()
    server = upstream = 0.0
    if pids is not None:
        server, upstream = process_cpu_seconds(pids[0]), _cpu(pids[1])
    assert window.end_ns is not None
    await _sleep_until(window.end_ns)
    lane.measured.client_cpu_s += time.process_time() - client
    if pids is not None:
        lane.measured.server_cpu_s += process_cpu_seconds(pids[0]) - server
        lane.measured.upstream_cpu_s += _cpu(pids[1]) - upstream


def _cpu(pid: int | None) -> float:
    return 0.0 if pid is None else process_cpu_seconds(pid)


@dataclass(frozen=True)
class _Plan:
    """What one client process runs: its part of every lane, the turns, and (the first process) whose CPU to read."""

    jobs: tuple[tuple[str, LoadJob], ...]
    pids: tuple[tuple[int, int | None], ...] | None
    turns: Turns
    rounds: int


async def _take_turns(plan: _Plan, ready: multiprocessing.Queue[Any], go: multiprocessing.Queue[int]) -> dict[str, Any]:
    pids, turns = plan.pids, plan.turns
    lanes = [await _LaneStreams.open(key, job) for key, job in plan.jobs]
    try:
        ready.put(("ready", None))
        schedule = _Schedule(go.get(timeout=READY_TIMEOUT_S), turns, len(lanes), plan.rounds)
        cpu_before = 0.0
        for number in range(schedule.count):
            lane = lanes[number % len(lanes)]
            start, window = schedule.turn(number)
            await _sleep_until(start)
            if number == len(lanes):  # the first counted turn: the machine's figures start here too
                cpu_before = time.process_time()
            lane.stats.window = window or Window(0, 0)
            counting = None
            if window is not None:
                lane_pids = None if pids is None else pids[number % len(lanes)]
                counting = asyncio.ensure_future(_count(lane, window, lane_pids))
            await lane.turn(start + int(turns.turn_s * 1e9))
            if counting is not None:
                await counting
        return {
            "client_cpu_s": time.process_time() - cpu_before,
            "lanes": {lane.key: {"stats": lane.stats.to_dict(), "measured": asdict(lane.measured)} for lane in lanes},
        }
    finally:
        for lane in lanes:
            await lane.close()


def _client(
    plan: _Plan, ready: multiprocessing.Queue[Any], go: multiprocessing.Queue[int], results: multiprocessing.Queue[Any]
) -> None:
    try:
        results.put(("ok", run_event_loop(_take_turns(plan, ready, go))))
    except Exception as exc:  # reported to the parent, which notes it
        ready.put(("error", f"{type(exc).__name__}: {exc}"))
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def measure(lanes: Sequence[Lane], streams: int, duration_s: float) -> dict[str, dict[str, Any]]:
    """One row per lane (by scenario key), as `bench.scenarios.measure` makes them, from one run of turns.

    Every lane has as many jobs as there are client processes; the first process also reads the servers' CPU.
    The warm-up is the first round of turns (``--warmup`` does not apply here).
    """
    turns = Turns.for_streams(streams)
    rounds = turns.rounds(duration_s)
    processes = len(lanes[0].jobs)
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[Any] = context.Queue()
    results: multiprocessing.Queue[Any] = context.Queue()
    goes: list[multiprocessing.Queue[int]] = [context.Queue() for _ in range(processes)]
    pids = tuple((lane.server_pid, lane.upstream_pid) for lane in lanes)
    children = [
        context.Process(
            target=_client,
            args=(
                _Plan(
                    tuple((lane.key, lane.jobs[index]) for lane in lanes), pids if index == 0 else None, turns, rounds
                ),
                ready,
                goes[index],
                results,
            ),
            daemon=True,
        )
        for index in range(processes)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            status, error = ready.get(timeout=READY_TIMEOUT_S)
            if status != "ready":
                raise RuntimeError(f"an interleaved client failed: {error}")
        schedule = _Schedule(time.monotonic_ns() + int(START_DELAY_S * 1e9), turns, len(lanes), rounds)
        for go in goes:
            go.put(schedule.start_ns)
        first, _ = schedule.turn(len(lanes))
        end, _ = schedule.turn(schedule.count)
        wall = (end - first) / 1e9
        time.sleep(max(0.0, (first - time.monotonic_ns()) / 1e9))
        machine, steal = machine_busy_seconds(), steal_seconds()
        servers = {pid for pair in pids for pid in pair if pid is not None}
        servers_before = sum(process_cpu_seconds(pid) for pid in servers)
        time.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
        busy = machine_busy_seconds() - machine
        stolen = steal_seconds() - steal
        servers_used = sum(process_cpu_seconds(pid) for pid in servers) - servers_before
        answers = []
        for _ in children:
            try:
                status, answer = results.get(timeout=RESULT_TIMEOUT_S)
            except queue.Empty as exc:
                raise TimeoutError("an interleaved client did not report") from exc
            if status != "ok":
                raise RuntimeError(f"an interleaved client failed: {answer}")
            answers.append(answer)
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    clients_used = sum(answer["client_cpu_s"] for answer in answers)
    other = max(0.0, busy - servers_used - clients_used)
    machine_row = {"other_cpu_percent": 100 * other / wall, "steal_cpu_percent": max(0.0, 100 * stolen / wall)}
    counted_s = rounds * turns.counted_s
    return {lane.key: _row(lane.key, answers, streams, processes, counted_s, machine_row) for lane in lanes}


def _row(
    key: str, answers: list[dict[str, Any]], streams: int, processes: int, counted_s: float, machine: dict[str, float]
) -> dict[str, Any]:
    stats = LoadStats()
    measured = _Measured()
    for answer in answers:
        part = answer["lanes"][key]
        stats.merge(LoadStats.from_dict(part["stats"]))
        got = _Measured(**part["measured"])
        measured.server_cpu_s += got.server_cpu_s
        measured.upstream_cpu_s += got.upstream_cpu_s
        measured.client_cpu_s += got.client_cpu_s
    attempts = max(stats.requests + sum(stats.errors.values()), 1)
    stats.client_cpu_s = measured.client_cpu_s
    row: dict[str, Any] = {
        "streams": streams,
        "client_processes": processes,
        **stats.summary(),
        "elapsed_s": round(counted_s, 3),
        "requests_per_s": stats.requests / counted_s,
        "frames_per_s": stats.frames / counted_s,
        "tokens_per_s": stats.output_tokens / counted_s,
        "client_cpu_percent": 100 * measured.client_cpu_s / counted_s,
        "server_cpu_us_per_request": 1e6 * measured.server_cpu_s / attempts,
        "server_cpu_percent": 100 * measured.server_cpu_s / counted_s,
        **machine,
        "interleaved": True,
    }
    if measured.upstream_cpu_s:
        row["upstream_cpu_us_per_request"] = 1e6 * measured.upstream_cpu_s / attempts
        row["upstream_cpu_percent"] = 100 * measured.upstream_cpu_s / counted_s
    return row
