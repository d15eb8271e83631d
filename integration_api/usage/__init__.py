"""The usage log: one record per request that reached a provider, kept for accounting (who spent what).

- `UsageLayer` (``layer``), the outermost pipeline layer, builds one `UsageRecord` (``record``) per request:
  principal, provider, model, outcome, tokens, cost, latencies, retries; never a credential, and message content
  only when ``log_content`` is on.
- `UsageLog` (``log``) buffers records in memory and writes them in batches from a background task, so the request
  path only appends to a list; `aclose` (SIGTERM, after the drain) writes every record still pending.
- `UsageStore` (``store``) is where batches go: SQLite in the data directory (``sqlite_store``, WAL, safe for
  several processes) or PostgreSQL when ``database_url`` is set (``postgres_store``, SQLAlchemy async on asyncpg,
  schema by the Alembic migrations in ``migrations/``).
- ``integration-api usage`` (``cli``) sums the log up per project, provider, model...
"""

from __future__ import annotations

from integration_api.usage.log import UsageLog
from integration_api.usage.record import GROUP_KEYS, UsageQuery, UsageRecord, UsageRow
from integration_api.usage.store import UsageStore, open_usage_store

__all__ = ["GROUP_KEYS", "UsageLog", "UsageQuery", "UsageRecord", "UsageRow", "UsageStore", "open_usage_store"]
