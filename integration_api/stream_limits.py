"""How many StreamChat streams one principal may hold open on this server process.

The bound is `max_streams_per_principal` (0: none) and, lower still, the key scope's `max_streams`. A stream over
it is refused at once with RESOURCE_EXHAUSTED, before any request is read; the streams already open are untouched.
Streams are counted per identity (the API key; a service token's or certificate's organization, project and
user), not per `Principal` value, so a key whose scope changes while its streams are open still counts as one.
The count is per process: with ``serve --workers N`` a principal may hold up to N times the bound.
"""

from __future__ import annotations

import logging
from types import TracebackType

from auth.principal import Principal
from integration_api.errors import ResourceExhausted

logger = logging.getLogger(__name__)

Identity = tuple[str, str, str, str | None, str | None]


def identity(principal: Principal) -> Identity:
    return (principal.method, principal.organization_id, principal.project_id, principal.user_id, principal.key_id)


class OpenStreams:
    """Open streams counted per principal; `open` hands out a hold that `with` releases."""

    def __init__(self, max_per_principal: int) -> None:
        self.max_per_principal = max_per_principal  # 0: no server-wide bound
        self._counts: dict[Identity, int] = {}

    def limit_for(self, principal: Principal) -> int | None:
        """The bound that applies to `principal`, or None without one."""
        limits = [self.max_per_principal] if self.max_per_principal > 0 else []
        if principal.scope is not None and principal.scope.max_streams is not None:
            limits.append(principal.scope.max_streams)
        return min(limits) if limits else None

    def count(self, principal: Principal) -> int:
        return self._counts.get(identity(principal), 0)

    def open(self, principal: Principal) -> StreamHold:
        """Count a new stream of `principal`, or raise ResourceExhausted when it already holds its limit."""
        key, limit = identity(principal), self.limit_for(principal)
        count = self._counts.get(key, 0)
        if limit is not None and count >= limit:
            logger.warning("refused a stream of %s: %d of %d streams already open", principal.describe(), count, limit)
            raise ResourceExhausted(
                f"this principal already holds {count} open streams, its limit (max_streams_per_principal or the"
                f" key's max_streams is {limit}); one stream carries many concurrent requests: reuse it, or close"
                " one first",
                human_message="Too many open streams for this key.",
            )
        self._counts[key] = count + 1
        return StreamHold(self, key)

    def _close(self, key: Identity) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)


class StreamHold:
    """One counted stream; released once, when its `with` block ends."""

    __slots__ = ("_key", "_streams")

    def __init__(self, streams: OpenStreams, key: Identity) -> None:
        self._streams: OpenStreams | None = streams
        self._key = key

    def __enter__(self) -> StreamHold:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._streams is not None:
            self._streams._close(self._key)
            self._streams = None
