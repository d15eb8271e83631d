"""A bounded, expiring cache of vendor SDK clients, so requests with the same credential share a connection pool.

Entries are keyed by a SHA-256 digest of (provider, credential, base URL): the raw key is never a cache key,
and this module never logs. Evicted clients are closed in the background, once no request holds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

T = TypeVar("T")


def credential_digest(provider: str, credential: Mapping[str, Any], base_url: str | None) -> str:
    """A stable digest of everything that makes two SDK clients different."""
    material = orjson.dumps([provider, credential, base_url or ""], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(material).hexdigest()


class ClientSource(Protocol):
    """Where a provider factory gets its SDK client: a `ClientCache`, or one request's `ClientLease` on it."""

    def get_or_create(self, digest: str, create: Callable[[], T]) -> T: ...


@dataclass(eq=False, slots=True)
class _Entry:
    client: Any
    expires: float
    users: int = 0  # requests holding it through a `ClientLease`
    retired: bool = False  # evicted while in use: closed when the last user is done


class ClientCache:
    """LRU + TTL cache of SDK clients. `get_or_create` builds a client once per digest until it expires.

    A client evicted (expired, or pushed out by the size bound) while requests still use it is closed only when
    the last of them is done, so no stream is cut in the middle: requests take clients through a `lease`.
    """

    def __init__(
        self, max_size: int = 256, ttl_s: float = 600.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_size = max_size
        self._ttl_s = ttl_s
        # Public so a test can drive expiry with a fake clock, also on the cache a running server built.
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._retired: set[_Entry] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.evictions = 0  # clients dropped for expiry or for the size bound (a metric: a cache too small churns)

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_create(self, digest: str, create: Callable[[], T]) -> T:
        return self._entry(digest, create).client  # type: ignore[no-any-return]

    def lease(self) -> ClientLease:
        """A view of this cache for one request: the clients it hands out stay open until `release`."""
        return ClientLease(self)

    def _entry(self, digest: str, create: Callable[[], Any]) -> _Entry:
        now = self.clock()
        entry = self._entries.get(digest)
        if entry is not None and entry.expires > now:
            self._entries.move_to_end(digest)
            return entry
        if entry is not None:
            self._evict(digest)
            self.evictions += 1
        entry = _Entry(create(), now + self._ttl_s)
        self._entries[digest] = entry
        while len(self._entries) > self._max_size:
            self._evict(next(iter(self._entries)))
            self.evictions += 1
        return entry

    def _release(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.retired and entry.users == 0:
            self._retired.discard(entry)
            self._close(entry.client)

    def _evict(self, digest: str) -> None:
        entry = self._entries.pop(digest)
        if entry.users:
            entry.retired = True
            self._retired.add(entry)
        else:
            self._close(entry.client)

    def _close(self, client: Any) -> None:
        close = getattr(client, "close", None) or getattr(client, "aclose", None)
        if close is None:
            return
        try:
            result = close()
        except Exception:  # a client that fails to close is dropped all the same
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every cached client, in use or not (server shutdown, after the drain)."""
        while self._entries:
            self._evict(next(iter(self._entries)))
        for entry in self._retired:
            self._close(entry.client)
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class ClientLease:
    """One request's use of a `ClientCache`: the same `get_or_create`, and `release` when the request is done."""

    __slots__ = ("_cache", "_entries")

    def __init__(self, cache: ClientCache) -> None:
        self._cache = cache
        self._entries: list[_Entry] = []

    def get_or_create(self, digest: str, create: Callable[[], T]) -> T:
        entry = self._cache._entry(digest, create)
        entry.users += 1
        self._entries.append(entry)
        return entry.client  # type: ignore[no-any-return]

    def release(self) -> None:
        """Give every client back (idempotent); an evicted one closes once nobody else holds it."""
        entries, self._entries = self._entries, []
        for entry in entries:
            self._cache._release(entry)
