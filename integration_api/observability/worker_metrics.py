"""One scrape for every worker of ``serve --workers N``: each worker publishes its counters, the scraped one adds them.

The workers share the HTTP port (SO_REUSEPORT), so a scrape reaches any one of them. Each worker writes its
counters (`CountersView`) to ``<data_dir>/metrics/serve-<parent pid>/<pid>.json`` once a second (and once more
when it stops), written whole and renamed into place so a reader never sees half a file; the worker that answers
a scrape adds its own live counters to the others' files. The others' figures are thus at most about a second
old. A worker that died keeps its counters in the sum (counters never go back), but not its gauges.

Why not prometheus-client's multiprocess mode: it keeps each metric in its own mmap files written per increment,
while our counters are the stats layer's plain integers (the ones GetServerStats reads, one source): publishing
them once a second costs nothing per request. Directories of earlier runs are removed at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from integration_api.observability.metrics import CountersView
from integration_api.sessions.stats import Histogram, ProviderCounters
from integration_api.settings import Settings

logger = logging.getLogger(__name__)
PUBLISH_INTERVAL_S = 1.0
_INTS = ("requests", "succeeded", "failed", "in_flight", "input_tokens", "output_tokens", "attempts", "rate_limited")
_HISTOGRAMS = ("total_time", "time_to_first_token", "time_per_output_chunk")


def worker_dir(settings: Settings) -> Path | None:
    """Where this run's workers publish (None with one worker: nothing to add up)."""
    if settings.workers <= 1:
        return None
    return settings.data_dir / "metrics" / f"serve-{os.getppid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_dirs(directory: Path) -> None:
    """Drop the directories of runs whose parent process is gone (racing workers may both try: harmless)."""
    for entry in directory.parent.glob("serve-*"):
        pid = entry.name.removeprefix("serve-")
        if entry != directory and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _dump_histogram(histogram: Histogram) -> list[Any]:
    return [histogram.count, histogram.total_ns, [[i, n] for i, n in enumerate(histogram.counts) if n]]


def _load_histogram(data: list[Any]) -> Histogram:
    histogram = Histogram()
    histogram.count, histogram.total_ns = int(data[0]), int(data[1])
    for index, count in data[2]:
        histogram.counts[int(index)] = int(count)
    return histogram


def dump(view: CountersView) -> bytes:
    series = []
    for key, counters in view.series.items():
        values: dict[str, Any] = {name: getattr(counters, name) for name in _INTS}
        values.update({name: _dump_histogram(getattr(counters, name)) for name in _HISTOGRAMS})
        values["codes"] = [[code, count] for code, count in counters.codes.items()]
        series.append([*key, values])
    return orjson.dumps(
        {"active_streams": view.active_streams, "evictions": view.client_cache_evictions, "series": series}
    )


def load(data: bytes, *, live: bool = True) -> CountersView:
    """A published view; gauges zeroed when its worker is not `live`."""
    document = orjson.loads(data)
    view = CountersView(active_streams=int(document["active_streams"]) if live else 0)
    view.client_cache_evictions = int(document["evictions"])
    for provider, model, rpc, values in document["series"]:
        counters = ProviderCounters()
        for name in _INTS:
            setattr(counters, name, int(values[name]))
        for name in _HISTOGRAMS:
            setattr(counters, name, _load_histogram(values[name]))
        counters.codes = {int(code): int(count) for code, count in values["codes"]}
        if not live:
            counters.in_flight = 0
        view.series[(str(provider), str(model), str(rpc))] = counters
    return view


def read_peers(directory: Path, own_pid: int) -> list[CountersView]:
    """The views the other workers published (an unreadable file is skipped: its worker may be mid-start)."""
    views = []
    for path in sorted(directory.glob("*.json")):
        pid = path.stem
        if not pid.isdigit() or int(pid) == own_pid:
            continue
        try:
            views.append(load(path.read_bytes(), live=_alive(int(pid))))
        except (OSError, ValueError, KeyError, TypeError):
            logger.debug("skipped an unreadable worker metrics file %s", path)
    return views


class WorkerPublisher:
    """Writes this worker's view to `directory` every `interval_s`, and once more on `aclose`."""

    def __init__(
        self, directory: Path, view: Callable[[], CountersView], interval_s: float = PUBLISH_INTERVAL_S
    ) -> None:
        self.directory = directory
        self.path = directory / f"{os.getpid()}.json"
        self._view = view
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_dirs(self.directory)
        self.publish()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="worker-metrics")

    def publish(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(dump(self._view()))
        os.replace(temporary, self.path)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                self.publish()
            except OSError as exc:  # a full disk must not stop the worker: the next second tries again
                logger.warning("could not publish this worker's metrics to %s: %s", self.path, exc)

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(OSError):
            self.publish()
