"""The per-request context: who is asking, for what, by when, and under which trace.

One frozen `RequestContext` is made for every request, by the engine (each StreamChat request) and by the unary
RPCs, and handed explicitly to every pipeline layer (``integration_api.pipeline``) and to the adapter (through
``ProviderEnv.context``). Nothing reads it from a global. It carries no secret, so it is safe to log.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from auth.principal import Principal

Metadata = Sequence[tuple[str, str | bytes]]

TRACEPARENT_HEADER = "traceparent"
# W3C Trace Context, version 00: version-traceid-parentid-flags, lower-case hex; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The caller's W3C trace context (from `traceparent`), for tracing layers to continue."""

    trace_id: str
    parent_span_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        """The trace context of a `traceparent` value, or None when absent or malformed (never an error)."""
        if not header:
            return None
        match = _TRACEPARENT.match(header.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, int(flags, 16))

    @classmethod
    def from_metadata(cls, metadata: Metadata | None) -> TraceContext | None:
        for key, value in metadata or ():
            if key.lower() == TRACEPARENT_HEADER:
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
                return cls.parse(text)
        return None


def new_stream_id() -> str:
    """A short random id naming one stream (or one unary call) in logs."""
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What every request of one stream (or one unary call) shares: set once, when the call is authenticated."""

    principal: Principal
    peer: str = ""
    stream_id: str = field(default_factory=new_stream_id)
    trace: TraceContext | None = None
    deadline: float | None = None  # time.monotonic() by which the call must end (the gRPC deadline), if any


@dataclass(slots=True)
class RequestStats:
    """What the layers learn while serving one request, for the layers outside them and the records made at the end.

    The one mutable part of a request's context: each field has one writer (named beside it).
    """

    attempts: int = 0  # upstream attempts made (the resilience layer counts them)
    served_by: str = ""  # "provider/model" that served the request, when a layer (routing) chose it


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One request: its stream's context plus what names this request."""

    stream: StreamContext
    rpc: str  # "StreamChat", "Chat", "Embedding", "Reranking", "VerifyCredential", "GetModeration"
    provider: str
    request_id: str = ""
    model: str = ""
    started_at: float = field(default_factory=time.time)  # wall clock, for records
    started_ns: int = field(default_factory=time.perf_counter_ns)  # for durations
    session_id: str = ""  # the conversation kept by the server this request continues (ChatRequest.sessionId)
    stats: RequestStats = field(default_factory=RequestStats)

    @property
    def principal(self) -> Principal:
        return self.stream.principal

    @property
    def stream_id(self) -> str:
        return self.stream.stream_id

    @property
    def trace(self) -> TraceContext | None:
        return self.stream.trace

    @property
    def deadline(self) -> float | None:
        return self.stream.deadline

    def for_provider(self, provider: str, model: str) -> RequestContext:
        """This request as it reaches another provider (a route's target): the same ids, times and stats."""
        return RequestContext(
            self.stream, self.rpc, provider, self.request_id, model, self.started_at, self.started_ns,
            self.session_id, self.stats,
        )  # fmt: skip

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        return None if self.stream.deadline is None else self.stream.deadline - time.monotonic()
