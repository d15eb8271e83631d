"""Rows (p) and (pr): the simulated-provider path of (b) with the policy layer doing real work on every request.

(b)'s key is unrestricted (the policy layer's fast path: no rule, no limiter call). Here the key has a scope (a
provider glob), its own rpm, tpm and concurrency limits, and its project a row with rpm, tpm and a daily token
budget: seven rules acquired and settled per request, far above what the load reaches, so nothing is refused.
(p) keeps the counts in the gateway process, (pr) in the local Redis (one Lua script round trip to admit, one,
off the request's path, to settle). Both rows also carry the usage log, as (b) does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from auth.api_keys import ApiKeyStore, parse_key
from auth.principal import KeyScope
from auth.projects import Budget, ProjectRecord, ProjectStore
from bench import sessions
from bench.servers import Gateway

HIGH = 1_000_000_000  # limits the bench never reaches


def limit_everything(gateway: Gateway) -> None:
    """Give the bench key and its project limits (before the first request: nothing cached them yet)."""
    parsed = parse_key(gateway.api_key)
    assert parsed is not None
    scope = KeyScope(providers=("sim*",), rpm=HIGH, tpm=HIGH, max_concurrent=100_000)
    ApiKeyStore(gateway.data_dir).update_scope(parsed[0], scope)
    project = ProjectRecord(
        "bench", "bench", KeyScope(rpm=HIGH, tpm=HIGH), budgets=(Budget("day", "tokens", float(HIGH)),)
    )
    ProjectStore(gateway.data_dir).set(project)


def redis_settings() -> tuple[dict[str, Any] | None, str | None]:
    """(the settings that put the limits in Redis, or None and why not)."""
    missing = sessions.redis_available()
    if missing is not None:
        return None, missing
    return {"INTEGRATION_API_REDIS_URL": sessions.REDIS_URL}, None


def flush_redis(stack: contextlib.ExitStack) -> None:
    stack.callback(sessions.redis_available)  # flushes the bench database again after the row
