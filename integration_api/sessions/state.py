"""`ServerState`: what the default pipeline layers share across requests, built once per server.

The stats counters and the sessions (over the store the settings choose); the gateway serves SessionService from
the same object, and closes its store when the server stops.
"""

from __future__ import annotations

from integration_api.policy import Policy
from integration_api.sessions.manager import Sessions
from integration_api.sessions.stats import ServerStats
from integration_api.sessions.store import SessionStore
from integration_api.settings import Settings
from integration_api.usage import UsageLog, open_usage_store


def open_store(settings: Settings) -> SessionStore:
    """Redis when `redis_url` is set (replicas share sessions), else SQLite in the data directory."""
    if settings.redis_url:
        from integration_api.sessions.redis_store import RedisSessionStore  # only servers that use Redis import it

        return RedisSessionStore(settings.redis_url.get_secret_value(), settings.session_ttl_s)
    from integration_api.sessions.sqlite_store import SqliteSessionStore

    return SqliteSessionStore(settings.data_dir, settings.session_ttl_s)


class ServerState:
    def __init__(self, settings: Settings, store: SessionStore | None = None) -> None:
        self.stats = ServerStats(model_allowlist=settings.metrics_model_allowlist)
        self.sessions = Sessions(settings, store if store is not None else open_store(settings), self.stats)
        self.usage = UsageLog(
            open_usage_store(settings),
            batch_size=settings.usage_batch_size,
            flush_interval_s=settings.usage_flush_interval_s,
        )
        self.policy = Policy(settings)  # scopes, rate limits, budgets (integration_api.policy)

    async def aclose(self) -> None:
        await self.sessions.store.aclose()
        await self.usage.aclose()  # writes what is still pending (the server flushed it already, after the drain)
        await self.policy.aclose()  # settlements in flight, then the limiter's connection
