"""A monotonic clock for tests that moves only when the test says so (expiry without waiting out real time)."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.reads = 0  # lets a test check the clock is the one in use

    def __call__(self) -> float:
        self.reads += 1
        return self.now
