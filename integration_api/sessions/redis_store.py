"""The shared session store: Redis (``INTEGRATION_API_REDIS_URL``), so that every replica sees every session.

Layout, under one key prefix:

- ``session:<id>``: a hash {``rev``: the revision, ``body``: the session as JSON}, expiring after the TTL of
  inactivity (every write sets the expiry again: TTL by key expiry);
- ``owner:<organization>\\x1f<project>``: a sorted set of the owner's session ids scored by last use (ListSessions);
- ``active``: the same for every session (GetServerStats' count).

Members of the sorted sets whose session has expired are skipped when read and pruned as they are found. A write is
one Lua script (one round trip) that checks the revision and the owner before it writes, so replicas appending to
one conversation cannot lose a turn. The TTL is also checked against the caller's clock (`now`), so a session is
gone after its TTL even where the server's clock and Redis' disagree, and tests need not wait out real time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from integration_api.errors import Unavailable
from integration_api.sessions import codec
from integration_api.sessions.store import MAX_LIST, Owner, Session, SessionStore

T = TypeVar("T")
DEFAULT_PREFIX = "integration_api:"

# KEYS: session, owner index, active index. ARGV: expected revision ("" = must not exist yet), new revision, body,
# TTL in whole seconds, last use (the score), session id, owner, the oldest last use still alive.
_WRITE = """
local current = redis.call('HMGET', KEYS[1], 'rev', 'owner', 'used')
if ARGV[1] == '' then
  if current[1] then return 0 end
elseif current[1] ~= ARGV[1] or current[2] ~= ARGV[7] or tonumber(current[3]) <= tonumber(ARGV[8]) then
  return 0
end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'body', ARGV[3], 'owner', ARGV[7], 'used', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
return 1
"""


class RedisSessionStore(SessionStore):
    def __init__(self, url: str, ttl_s: float, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(ttl_s)
        self.url = url
        self._prefix = prefix
        self._redis: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._write = self._redis.register_script(_WRITE)
        self._active = f"{prefix}active"

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}session:{session_id}"

    def _owner_key(self, owner: Owner) -> str:
        return f"{self._prefix}owner:{owner.organization_id}\x1f{owner.project_id}"

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except RedisError as exc:
            raise Unavailable(f"the session store (Redis) failed: {type(exc).__name__}: {exc}") from exc

    def _visible(self, raw: Any, owner: Owner, session_id: str, now: float) -> Session | None:
        if raw is None:
            return None
        session = codec.decode(raw)
        if session.id != session_id or session.owner != owner or not self.alive(session, now):
            return None
        return session

    async def _store(self, session: Session, expected: str, now: float) -> bool:
        keys = [self._session_key(session.id), self._owner_key(session.owner), self._active]
        args: list[str | int] = [
            expected,
            session.revision,
            codec.encode(session).decode(),
            max(1, math.ceil(self.ttl_s)),
            repr(session.last_used_at),
            session.id,
            _owner_field(session.owner),
            repr(now - self.ttl_s),
        ]
        return bool(await self._call(lambda: self._write(keys=keys, args=args)))

    # --- SessionStore --------------------------------------------------------------------------------------------

    async def create(self, session: Session, now: float) -> None:
        await self._call(lambda: self._redis.zremrangebyscore(self._active, "-inf", now - self.ttl_s))
        if not await self._store(session, "", now):
            raise Unavailable(f"session id {session.id!r} is already taken in the session store")

    async def get(self, owner: Owner, session_id: str, now: float) -> Session | None:
        raw = await self._call(lambda: self._redis.hget(self._session_key(session_id), "body"))
        return self._visible(raw, owner, session_id, now)

    async def list(self, owner: Owner, now: float, limit: int = MAX_LIST) -> list[Session]:
        index = self._owner_key(owner)
        cutoff = now - self.ttl_s
        ids = await self._call(lambda: self._redis.zrevrangebyscore(index, "+inf", f"({cutoff}", start=0, num=limit))
        if not ids:
            return []
        names = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in ids]

        async def bodies() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hget(self._session_key(name), "body")
                return list(await pipe.execute())

        found = []
        gone = []
        for name, raw in zip(names, await self._call(bodies), strict=True):
            session = self._visible(raw, owner, name, now)
            if session is None:
                gone.append(name)
            else:
                found.append(session)
        if gone:
            await self._call(lambda: self._redis.zrem(index, *gone))
        return found

    async def replace(self, session: Session, expected_revision: int, now: float) -> bool:
        return await self._store(session, str(expected_revision), now)

    async def delete(self, owner: Owner, session_id: str, now: float) -> bool:
        if await self.get(owner, session_id, now) is None:
            return False

        async def remove() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._session_key(session_id))
                pipe.zrem(self._owner_key(owner), session_id)
                pipe.zrem(self._active, session_id)
                deleted, _, _ = await pipe.execute()
                return int(deleted)

        return await self._call(remove) == 1

    async def count_active(self, now: float) -> int:
        return int(await self._call(lambda: self._redis.zcount(self._active, f"({now - self.ttl_s}", "+inf")))

    async def aclose(self) -> None:
        await self._redis.aclose()


def _owner_field(owner: Owner) -> str:
    return f"{owner.organization_id}\x1f{owner.project_id}"
