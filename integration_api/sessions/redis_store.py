"""The shared session store: Redis (``INTEGRATION_API_REDIS_URL``), so that every replica sees every session.

Layout, under one key prefix:

- ``session:<id>``: a hash {``rev``: the revision, ``body``: the session as JSON}, expiring after the TTL of
  inactivity (every write sets the expiry again: TTL by key expiry);
- ``owner:<organization>\\x1f<project>``: a sorted set of the owner's session ids scored by last use (ListSessions);
- ``active``: the same for every session (GetServerStats' count).

Members of the sorted sets whose session has expired are skipped when read and pruned as they are found. A write is
one Lua script (one round trip) that checks the revision and the owner before it writes, so replicas appending to
one conversation cannot lose a turn. Turns that end while a write is in flight go together in the next call
(``integration_api.batching.Batcher``): one script call writes each of them, each still its own check with its
own answer, in the order they ended. The TTL is also checked against the caller's clock (`now`), so a session is
gone after its TTL even where the server's clock and Redis' disagree, and tests need not wait out real time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from integration_api.batching import Batcher
from integration_api.errors import Unavailable
from integration_api.sessions import codec
from integration_api.sessions.store import MAX_LIST, Owner, Session, SessionStore

T = TypeVar("T")
DEFAULT_PREFIX = "integration_api:"

# Writes of one or more sessions, each checked on its own, in order; returns 1 (written) or 0 for each.
# Per session, KEYS: session, owner index, active index; ARGV: expected revision ("" = must not exist yet), new
# revision, body, TTL in whole seconds, last use (the score), session id, owner, the oldest last use still alive.
_WRITE = """
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, i * 8
  local current = redis.call('HMGET', KEYS[k + 1], 'rev', 'owner', 'used')
  local ok = 1
  if ARGV[a + 1] == '' then
    if current[1] then ok = 0 end
  elseif current[1] ~= ARGV[a + 1] or current[2] ~= ARGV[a + 7] or tonumber(current[3]) <= tonumber(ARGV[a + 8]) then
    ok = 0
  end
  if ok == 1 then
    redis.call('HSET', KEYS[k + 1], 'rev', ARGV[a + 2], 'body', ARGV[a + 3], 'owner', ARGV[a + 7], 'used', ARGV[a + 5])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[a + 4])
    redis.call('ZADD', KEYS[k + 2], ARGV[a + 5], ARGV[a + 6])
    redis.call('EXPIRE', KEYS[k + 2], ARGV[a + 4])
    redis.call('ZADD', KEYS[k + 3], ARGV[a + 5], ARGV[a + 6])
  end
  out[#out + 1] = ok
end
return out
"""
_Write: TypeAlias = tuple[Session, str, float]  # (the session to write, the revision it replaces or "", now)


class RedisSessionStore(SessionStore):
    def __init__(self, url: str, ttl_s: float, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(ttl_s)
        self.url = url
        self._prefix = prefix
        self._redis: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._write = self._redis.register_script(_WRITE)
        self._active = f"{prefix}active"
        self._turns: Batcher[_Write, bool] = Batcher(self._write_many)  # see `replace`

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

    async def _write_many(self, writes: Sequence[_Write]) -> list[bool]:
        keys: list[str] = []
        args: list[str | int] = []
        ttl = max(1, math.ceil(self.ttl_s))
        for session, expected, now in writes:
            keys += [self._session_key(session.id), self._owner_key(session.owner), self._active]
            args += [
                expected,
                session.revision,
                codec.encode(session).decode(),
                ttl,
                repr(session.last_used_at),
                session.id,
                _owner_field(session.owner),
                repr(now - self.ttl_s),
            ]
        written = await self._call(lambda: self._write(keys=keys, args=args))
        return [bool(answer) for answer in written]

    # --- SessionStore --------------------------------------------------------------------------------------------

    async def create(self, session: Session, now: float) -> None:
        await self._call(lambda: self._redis.zremrangebyscore(self._active, "-inf", now - self.ttl_s))
        if not (await self._write_many([(session, "", now)]))[0]:
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
        return await self._turns.submit((session, str(expected_revision), now))

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
        await self._turns.aclose()
        await self._redis.aclose()


def _owner_field(owner: Owner) -> str:
    return f"{owner.organization_id}\x1f{owner.project_id}"
