"""Running `integration-api bench`: the load in this process or several, a live progress bar, the report."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from integration_api.loadtest._config import LoadConfig
from integration_api.loadtest._core import run_load
from integration_api.loadtest._report import describe, render
from integration_api.loadtest._runner import GrpcLoad, run_event_loop, run_processes
from integration_api.loadtest._stats import LoadStats


class ProgressBar:
    """Requests done against the count bound, or time against the duration bound."""

    def __init__(self, config: LoadConfig, console: Console, enabled: bool) -> None:
        self.config = config
        duration = config.effective_duration_s
        self.by_time = duration is not None
        if self.by_time:
            self.total = config.warmup_s + (duration or 0.0)
        else:
            per_stream = (config.requests_per_stream or 0) * config.streams
            self.total = float(min(n for n in (config.count, per_stream) if n))
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]bench[/]"),
            BarColumn(),
            TextColumn(
                "{task.fields[done]:>9,} requests  {task.fields[rate]:>9,.0f} req/s  {task.fields[errors]} errors"
            ),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=True,
        )
        self.task: TaskID = self.progress.add_task("bench", total=self.total, done=0, rate=0.0, errors=0)
        self._last = (self.started, 0)

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, done: int, errors: int) -> None:
        now = time.monotonic()
        last_time, last_done = self._last
        rate = (done - last_done) / (now - last_time) if now - last_time >= 0.5 else None
        if rate is not None:
            self._last = (now, done)
        completed = min(now - self.started, self.total) if self.by_time else float(done)
        if rate is not None:
            self.progress.update(self.task, rate=rate)
        self.progress.update(self.task, completed=completed, done=done, errors=errors)


async def _in_process(config: LoadConfig, on_progress: Callable[[int, int], None]) -> LoadStats:
    stats = LoadStats()
    runner = asyncio.ensure_future(run_load(config, stats=stats))
    while not runner.done():
        await asyncio.wait({runner}, timeout=0.1)
        on_progress(stats.done_all, stats.errors_all)
    return runner.result()


def run_command(config: LoadConfig, processes: int, *, json_output: bool, show_progress: bool) -> int:
    """Run the load, print the report; the exit code is 1 when a request failed (2 when the run could not run)."""
    errors = Console(stderr=True)
    parts = config.split(processes)
    try:
        with ProgressBar(config, errors, show_progress and errors.is_terminal) as bar:
            if len(parts) == 1:
                stats = run_event_loop(_in_process(config, bar.update))
            else:
                jobs = [GrpcLoad(part) for part in parts]
                stats = run_processes(jobs, config.warmup_s, config.effective_duration_s, on_progress=bar.update)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        errors.print(f"[red]bench failed:[/] {exc}")
        return 2
    summary = stats.summary()
    settings = describe(config, len(parts))
    if json_output:
        sys.stdout.write(json.dumps({"settings": settings, "results": summary}, indent=2) + "\n")
    else:
        Console().print(render(summary, settings))
    return 1 if summary["error_count"] else 0
