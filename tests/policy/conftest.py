"""Limiters to test: the in-process one and the Redis one (database 11 of the local Redis, flushed once)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis

from integration_api.policy.limits import Limiter, LocalLimiter
from integration_api.policy.redis_limiter import RedisLimiter

REDIS_DB = 11
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
LIMITERS = ("local", "redis")


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The local Redis' database 11, flushed at the start of the session (helper-owned database number)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis answers on 127.0.0.1:6379 ({exc}): start one (redis-server) to test shared limits")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(params=LIMITERS)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "local":
        yield LocalLimiter()
        return
    url: str = request.getfixturevalue("redis_server")
    # A prefix of its own per test: no test sees another's counts, and nothing needs flushing between tests.
    shared = RedisLimiter(url, prefix=f"test:{secrets.token_hex(4)}:")
    yield shared
    await shared.aclose()
