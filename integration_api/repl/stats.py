"""What `/stats` shows: the REPL's own counters, kept on the client side (the gateway's are `/server`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class ClientStats:
    """Counters of one REPL run. A "stream" is one reply (one request on the StreamChat stream)."""

    started: float = field(default_factory=time.monotonic)
    messages_sent: int = 0
    streams_ok: int = 0
    streams_failed: int = 0
    streams_cancelled: int = 0
    chunks: int = 0  # text deltas received
    reconnections: int = 0
    _response_s: float = 0.0  # total time of the successful replies

    def reply_ok(self, elapsed_s: float) -> None:
        self.streams_ok += 1
        self._response_s += elapsed_s

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def average_response_s(self) -> float | None:
        """Mean time from sending a message to its whole reply, over the successful ones (None: none yet)."""
        return self._response_s / self.streams_ok if self.streams_ok else None
