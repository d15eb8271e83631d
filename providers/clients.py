"""A bounded, expiring cache of vendor SDK clients, so requests with the same credential share a connection pool.

Entries are keyed by a SHA-256 digest of (provider, credential, base URL): the raw key is never a cache key,
and this module never logs. Evicted clients are closed in the background.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


def credential_digest(provider: str, credential: Mapping[str, Any], base_url: str | None) -> str:
    """A stable digest of everything that makes two SDK clients different."""
    material = orjson.dumps([provider, credential, base_url or ""], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(material).hexdigest()


class ClientCache:
    """LRU + TTL cache of SDK clients. `get_or_create` builds a client once per digest until it expires."""

    def __init__(self, max_size: int = 256, ttl_s: float = 600.0) -> None:
        self._max_size = max_size
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_create(self, digest: str, create: Callable[[], T]) -> T:
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(digest)
            return entry[1]  # type: ignore[no-any-return]
        if entry is not None:
            self._evict(digest)
        client = create()
        self._entries[digest] = (now + self._ttl_s, client)
        while len(self._entries) > self._max_size:
            self._evict(next(iter(self._entries)))
        return client

    def _evict(self, digest: str) -> None:
        _, client = self._entries.pop(digest)
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
        """Close every cached client (server shutdown)."""
        while self._entries:
            self._evict(next(iter(self._entries)))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
