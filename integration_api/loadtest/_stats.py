"""What a load run measured: counts, errors by code, and latency histograms, within a measurement window.

A run has a warm-up and a window: requests that complete inside `Window` are counted, the others (warm-up, and
stragglers finishing after the end of a timed run) only feed the progress counters. Times are
``time.monotonic_ns()``, one clock for every process on the machine, so client processes share one window.
`LoadStats` from several processes merge into one.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from integration_api.loadtest._histogram import Histogram

_NS_PER_US = 1_000


@dataclass(frozen=True, slots=True)
class Window:
    """Requests completing in [start_ns, end_ns] count; no new request starts after `end_ns` (None: no end)."""

    start_ns: int
    end_ns: int | None = None

    @classmethod
    def after(cls, warmup_s: float, duration_s: float | None) -> Window:
        start = time.monotonic_ns() + int(warmup_s * 1e9)
        return cls(start, None if duration_s is None else start + int(duration_s * 1e9))

    def open_at(self, now_ns: int) -> bool:
        """Whether a request may still start at `now_ns`."""
        return self.end_ns is None or now_ns < self.end_ns

    def counts(self, end_ns: int) -> bool:
        return end_ns >= self.start_ns and (self.end_ns is None or end_ns <= self.end_ns)


@dataclass(slots=True)
class LoadStats:
    """Everything one run (or several merged runs) measured."""

    window: Window = field(default_factory=lambda: Window(0))
    requests: int = 0  # succeeded within the window
    frames: int = 0  # of those requests, terminal frames included
    output_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # failed within the window, by code
    first_frame_us: Histogram = field(default_factory=Histogram)
    final_frame_us: Histogram = field(default_factory=Histogram)
    last_completion_ns: int = 0
    client_cpu_s: float = 0.0
    done_all: int = 0  # every completion, warm-up included (progress)
    errors_all: int = 0

    def record_success(self, start_ns: int, first_ns: int, end_ns: int, frames: int, tokens: int) -> None:
        self.done_all += 1
        if not self.window.counts(end_ns):
            return
        self.requests += 1
        self.frames += frames
        self.output_tokens += tokens
        self.first_frame_us.record((first_ns - start_ns) / _NS_PER_US)
        self.final_frame_us.record((end_ns - start_ns) / _NS_PER_US)
        self.last_completion_ns = max(self.last_completion_ns, end_ns)

    def record_error(self, code: str, end_ns: int) -> None:
        self.done_all += 1
        self.errors_all += 1
        if self.window.counts(end_ns):
            self.errors[code] += 1
            self.last_completion_ns = max(self.last_completion_ns, end_ns)

    def merge(self, other: LoadStats) -> None:
        self.window = other.window if not self.window.start_ns else self.window
        self.requests += other.requests
        self.frames += other.frames
        self.output_tokens += other.output_tokens
        self.errors.update(other.errors)
        self.first_frame_us.merge(other.first_frame_us)
        self.final_frame_us.merge(other.final_frame_us)
        self.last_completion_ns = max(self.last_completion_ns, other.last_completion_ns)
        self.client_cpu_s += other.client_cpu_s
        self.done_all += other.done_all
        self.errors_all += other.errors_all

    @property
    def elapsed_s(self) -> float:
        """The window's length: its set end, else up to the last completion."""
        end = self.window.end_ns if self.window.end_ns is not None else self.last_completion_ns
        return max(end - self.window.start_ns, 1) / 1e9

    def summary(self) -> dict[str, Any]:
        """The figures a report shows, as plain JSON-able data (latencies in milliseconds)."""
        elapsed = self.elapsed_s
        attempts = self.requests + sum(self.errors.values())
        return {
            "requests": self.requests,
            "errors": dict(sorted(self.errors.items())),
            "error_count": sum(self.errors.values()),
            "elapsed_s": round(elapsed, 3),
            "requests_per_s": self.requests / elapsed,
            "frames_per_s": self.frames / elapsed,
            "tokens_per_s": self.output_tokens / elapsed,
            "first_frame_ms": latency_summary(self.first_frame_us),
            "final_frame_ms": latency_summary(self.final_frame_us),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "client_cpu_us_per_request": 1e6 * self.client_cpu_s / attempts if attempts else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, for sending across processes (`from_dict` reverses it)."""
        return {
            "window": [self.window.start_ns, self.window.end_ns],
            "requests": self.requests,
            "frames": self.frames,
            "output_tokens": self.output_tokens,
            "errors": dict(self.errors),
            "first_frame_us": self.first_frame_us.to_dict(),
            "final_frame_us": self.final_frame_us.to_dict(),
            "last_completion_ns": self.last_completion_ns,
            "client_cpu_s": self.client_cpu_s,
            "done_all": self.done_all,
            "errors_all": self.errors_all,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadStats:
        start, end = data["window"]
        return cls(
            window=Window(int(start), None if end is None else int(end)),
            requests=int(data["requests"]),
            frames=int(data["frames"]),
            output_tokens=int(data["output_tokens"]),
            errors=Counter({str(k): int(v) for k, v in data["errors"].items()}),
            first_frame_us=Histogram.from_dict(data["first_frame_us"]),
            final_frame_us=Histogram.from_dict(data["final_frame_us"]),
            last_completion_ns=int(data["last_completion_ns"]),
            client_cpu_s=float(data["client_cpu_s"]),
            done_all=int(data["done_all"]),
            errors_all=int(data["errors_all"]),
        )


def latency_summary(histogram: Histogram) -> dict[str, float]:
    """p50/p90/p99/mean/max of a microsecond histogram, in milliseconds."""
    return {
        "p50": histogram.percentile(50) / 1000,
        "p90": histogram.percentile(90) / 1000,
        "p99": histogram.percentile(99) / 1000,
        "mean": histogram.mean / 1000,
        "max": histogram.maximum / 1000,
    }


class Budget:
    """How many more requests one process may start: a count bound and the window's end."""

    __slots__ = ("_remaining", "_window")

    def __init__(self, window: Window, count: int | None) -> None:
        self._window = window
        self._remaining = count

    def take(self) -> bool:
        if not self._window.open_at(time.monotonic_ns()):
            return False
        if self._remaining is None:
            return True
        if self._remaining <= 0:
            return False
        self._remaining -= 1
        return True
