"""What a load run does: `LoadConfig`, one frozen (and picklable) object per run, split over client processes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DURATION_S = 10.0
MAX_STREAMS_PER_CHANNEL = 100  # one HTTP/2 connection carries about this many concurrent streams by default


@dataclass(frozen=True)
class LoadConfig:
    """One load run against one gateway. Bounds: `count` requests in all, `duration_s` after the warm-up,
    `requests_per_stream`; the run ends at the first bound reached (with none given, `DEFAULT_DURATION_S`)."""

    target: str = "127.0.0.1:50051"
    provider: str = "simulated"
    model: str = ""
    credential: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)  # model parameters; "model." is added if missing
    metadata: tuple[tuple[str, str], ...] = ()  # x-api-key or x-internal-service-key
    tls: bool = False
    root_cert: bytes | None = None  # PEM roots for TLS (None: the system's)
    server_name: str | None = None  # TLS name to verify instead of the target's host
    streams: int = 1
    requests_per_stream: int | None = None
    concurrency_per_stream: int = 1
    prompt_words: int = 20
    duration_s: float | None = None
    count: int | None = None
    warmup_s: float = 0.0
    request_timeout_s: float = 60.0
    streams_per_channel: int = MAX_STREAMS_PER_CHANNEL

    def __post_init__(self) -> None:
        for name in ("streams", "concurrency_per_stream", "streams_per_channel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("requests_per_stream", "count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 when given")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive when given")
        if self.prompt_words < 0 or self.warmup_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("prompt_words and warmup_s must not be negative; request_timeout_s must be positive")

    @property
    def effective_duration_s(self) -> float | None:
        """The time bound: as given, or the default when no other bound is set."""
        if self.duration_s is None and self.count is None and self.requests_per_stream is None:
            return DEFAULT_DURATION_S
        return self.duration_s

    def split(self, processes: int) -> list[LoadConfig]:
        """This run as one config per client process: streams (and the count) spread as evenly as possible."""
        processes = max(1, min(processes, self.streams))
        parts: list[LoadConfig] = []
        for index in range(processes):
            streams = _share(self.streams, processes, index)
            count = None if self.count is None else _share(self.count, processes, index)
            if count == 0:
                continue
            parts.append(dataclasses.replace(self, streams=streams, count=count))
        return parts


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)
