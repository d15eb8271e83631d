"""`UsageStore`: where batches of usage records go, and how they are summed; `open_usage_store` picks one.

SQLite in the data directory by default; PostgreSQL when ``database_url`` is set (replicas on several hosts share
it). Both implementations pass the same tests (tests/usage/test_store.py). A store raises only
``integration_api.errors.Unavailable`` when its database fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from integration_api.settings import Settings
from integration_api.usage.record import UsageQuery, UsageRecord, UsageRow


class UsageStore(ABC):
    @abstractmethod
    async def start(self) -> None:
        """Connect and bring the schema up to date (idempotent; the first write or query does it too)."""

    @abstractmethod
    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Append `records` in one transaction: all of them are written, or none (then it raises Unavailable)."""

    @abstractmethod
    async def summarize(self, query: UsageQuery) -> list[UsageRow]:
        """The sums per group of the records `query` selects, ordered by the group keys."""

    @abstractmethod
    async def recent(self, limit: int = 100) -> list[UsageRecord]:
        """The `limit` newest records (by when they were written), newest first."""

    @abstractmethod
    async def count(self) -> int:
        """How many records the store holds (tests and benchmarks)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads; the store is not used after this."""


def open_usage_store(settings: Settings) -> UsageStore:
    """PostgreSQL when `database_url` is set, else SQLite in the data directory. Opens lazily: nothing connects
    until the first write or query."""
    if settings.database_url is not None:
        from integration_api.usage.postgres_store import PostgresUsageStore  # only servers that use it import it

        return PostgresUsageStore(settings.database_url.get_secret_value())
    from integration_api.usage.sqlite_store import SqliteUsageStore

    return SqliteUsageStore(settings.data_dir)
