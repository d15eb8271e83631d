"""A small, fast decoder of server-sent events, for the adapters that read a stream's raw bytes themselves.

It follows the WHATWG event-stream format: lines end with LF, CRLF or a lone CR (also when a CRLF is split
between two reads); ``:`` starts a comment; ``data`` lines accumulate, joined with LF; ``event`` names the event;
a blank line dispatches it (only when it has data). Fields other than ``data`` and ``event`` (``id``, ``retry``)
are ignored: no adapter needs them. One deliberate leniency: an event still open when the stream ends is
dispatched too, so a server that omits the last blank line (or the last newline) loses nothing.

Data stays ``bytes`` (orjson parses bytes directly, so there is no decode step), and `SSEDecoder.feed` takes
whole network reads and returns a list, so the per-event cost is one split, a couple of comparisons and one
tuple. A line or an event longer than `max_event_bytes` raises `SSEError` rather than growing without bound.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import NamedTuple

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEError", "ServerSentEvent", "aiter_events"]

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class SSEError(ValueError):
    """The byte stream is not a usable event stream (a line or an event exceeds the size limit)."""


class ServerSentEvent(NamedTuple):
    """One dispatched event: its name ("" when it has none, i.e. the spec's "message") and its data."""

    event: str
    data: bytes


class SSEDecoder:
    """Incremental decoder: `feed` each read of the body as it arrives, then `flush` once at its end."""

    __slots__ = ("_data", "_data_size", "_event", "_max", "_parts", "_parts_size", "_skip_lf", "_started")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._parts: list[bytes] = []  # the start of a line whose end has not arrived yet
        self._parts_size = 0
        self._skip_lf = False  # the last read ended with CR: an LF opening the next one belongs to it
        self._started = False
        self._event = ""
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by `chunk` (often none or one; several when reads coalesce)."""
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(_BOM)
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)
            return []
        if self._parts:
            chunk = b"".join(self._parts) + chunk
            self._parts.clear()
            self._parts_size = 0
        lines = self._split(chunk)
        self._hold(lines.pop())
        return self._lines(lines)

    def flush(self) -> list[ServerSentEvent]:
        """The end of the stream: the last line, and the event still open (dispatched, see the module doc)."""
        lines = [b"".join(self._parts)] if self._parts else []
        self._parts.clear()
        self._parts_size = 0
        lines.append(b"")
        return self._lines(lines)

    def _split(self, chunk: bytes) -> list[bytes]:
        """`chunk` cut into lines; the last item is the unfinished line after the last line end."""
        if b"\r" in chunk:
            # A final CR ends a line now; if an LF opens the next read, it is part of the same line end.
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return chunk.split(b"\n")

    def _hold(self, part: bytes) -> None:
        if not part:
            return
        self._parts.append(part)
        self._parts_size += len(part)
        if self._parts_size > self._max:
            raise SSEError(f"an event-stream line is longer than {self._max} bytes")

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(ServerSentEvent(self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                    self._data_size = 0
                self._event = ""
            elif line.startswith(b"data:"):
                self._add_data(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] != 0x3A:  # ":" starts a comment
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data":  # "data" without a colon: an empty data line
            self._add_data(value)

    def _add_data(self, value: bytes) -> None:
        self._data.append(value)
        self._data_size += len(value) + 1
        if self._data_size > self._max:
            raise SSEError(f"an event is longer than {self._max} bytes")


async def aiter_events(
    chunks: AsyncIterable[bytes], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of a body read as `chunks`, each yielded as soon as the read that completes it arrives."""
    decoder = SSEDecoder(max_event_bytes)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
