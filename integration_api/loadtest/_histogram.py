"""A latency histogram that merges across processes and stays small however long the run.

Values (microseconds) fall into logarithmic buckets growing by 2% each, so a percentile is within about 1% of
the true value, and a day-long run holds a few hundred buckets. Histograms from several client processes add up.
"""

from __future__ import annotations

import math
from typing import Any

GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)


class Histogram:
    """Counts of values per logarithmic bucket, plus the exact count, sum, min and max."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    def record(self, value: float) -> None:
        index = int(math.log(value) / _LOG_GROWTH) if value > 1.0 else 0
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Histogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, percent: float) -> float:
        """The value below which `percent` % of the values fall (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * percent / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = GROWTH ** (index + 0.5) if index else 1.0
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum

    def to_dict(self) -> dict[str, Any]:
        return {
            "buckets": [[index, count] for index, count in sorted(self.buckets.items())],
            "count": self.count,
            "total": self.total,
            "min": self.minimum if self.count else 0.0,
            "max": self.maximum,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        histogram = cls()
        histogram.buckets = {int(index): int(count) for index, count in data["buckets"]}
        histogram.count = int(data["count"])
        histogram.total = float(data["total"])
        histogram.minimum = float(data["min"]) if histogram.count else math.inf
        histogram.maximum = float(data["max"])
        return histogram
