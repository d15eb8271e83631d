"""The shared usage store: PostgreSQL through SQLAlchemy 2 (async, asyncpg), schema by Alembic migrations.

`start` (or the first write) connects and runs the migrations to head (``integration_api.usage.migrate``). A batch
is one transaction holding one COPY (asyncpg's binary ``copy_records_to_table`` on the pool's connection): ~1.5x
SQLAlchemy's multi-row INSERT ... VALUES here (46,000 vs 32,000 records/s in batches of 500). Connection and
database failures become ``Unavailable``; the usage log keeps the batch and retries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from integration_api.errors import Unavailable
from integration_api.usage import migrate
from integration_api.usage.record import (
    CANCELLED,
    COLUMNS,
    GROUP_KEYS,
    OK,
    UsageQuery,
    UsageRecord,
    UsageRow,
    as_tuple,
)
from integration_api.usage.store import UsageStore
from integration_api.usage.tables import usage_records

POOL_SIZE = 2  # one batch is written at a time; the other connection serves queries


def _row(record: UsageRecord) -> tuple[Any, ...]:
    values = as_tuple(record)
    return (datetime.fromtimestamp(record.time, UTC), *values[1:])  # `time` is the first column


assert COLUMNS[0] == "time"


def _group_column(key: str) -> sa.ColumnElement[Any]:
    if key == "day":
        return sa.func.to_char(sa.func.timezone("UTC", usage_records.c.time), "YYYY-MM-DD").label("day")
    return usage_records.c[GROUP_KEYS[key]].label(key)


class PostgresUsageStore(UsageStore):
    """The usage log in one PostgreSQL database (its URL may carry a password: it is never logged)."""

    def __init__(self, url: str) -> None:
        self.url = migrate.async_url(url)
        self._engine: AsyncEngine | None = None
        self._ready: asyncio.Lock | None = None

    async def _db(self) -> AsyncEngine:
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._engine is None:
                engine = create_async_engine(self.url, pool_size=POOL_SIZE, pool_pre_ping=True)
                try:
                    await migrate.upgrade(engine)
                except (SQLAlchemyError, OSError) as exc:
                    await engine.dispose()
                    raise Unavailable(f"the usage database cannot be migrated: {_describe(exc)}") from exc
                self._engine = engine
            return self._engine

    async def start(self) -> None:
        await self._db()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        engine = await self._db()
        rows = [_row(record) for record in records]
        try:
            async with engine.begin() as connection:
                raw = await connection.get_raw_connection()
                await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                    usage_records.name, records=rows, columns=list(COLUMNS)
                )
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"writing to the usage database failed: {_describe(exc)}") from exc

    async def summarize(self, query: UsageQuery) -> list[UsageRow]:
        engine = await self._db()
        table = usage_records.c
        groups = [_group_column(key) for key in query.group_by]
        statement = sa.select(
            *groups,
            sa.func.count().label("requests"),
            sa.func.count().filter(table.status.not_in([OK, CANCELLED])).label("errors"),
            sa.func.count().filter(table.status == CANCELLED).label("cancelled"),
            sa.func.coalesce(sa.func.sum(table.input_tokens), 0).label("input_tokens"),
            sa.func.coalesce(sa.func.sum(table.output_tokens), 0).label("output_tokens"),
            sa.func.coalesce(sa.func.sum(table.cost), 0.0).label("cost"),
        )
        if query.since is not None:
            statement = statement.where(table.time >= datetime.fromtimestamp(query.since, UTC))
        if query.organization is not None:
            statement = statement.where(table.organization_id == query.organization)
        if query.project is not None:
            statement = statement.where(table.project_id == query.project)
        if groups:
            positions: list[sa.ColumnElement[Any]] = [sa.literal_column(str(index + 1)) for index in range(len(groups))]
            statement = statement.group_by(*positions).order_by(*positions)
        try:
            async with engine.connect() as connection:
                result = (await connection.execute(statement)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"reading the usage database failed: {_describe(exc)}") from exc
        width = len(groups)
        return [
            UsageRow(
                keys=dict(zip(query.group_by, row[:width], strict=True)),
                requests=int(row.requests),
                errors=int(row.errors),
                cancelled=int(row.cancelled),
                input_tokens=int(row.input_tokens),
                output_tokens=int(row.output_tokens),
                cost=float(row.cost),
            )
            for row in result
            if row.requests
        ]

    async def recent(self, limit: int = 100) -> list[UsageRecord]:
        engine = await self._db()
        columns = [usage_records.c[name] for name in COLUMNS]
        statement = sa.select(*columns).order_by(usage_records.c.id.desc()).limit(limit)
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(statement)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"reading the usage database failed: {_describe(exc)}") from exc
        return [UsageRecord(row[0].timestamp(), *row[1:]) for row in rows]

    async def count(self) -> int:
        engine = await self._db()
        try:
            async with engine.connect() as connection:
                result = await connection.execute(sa.select(sa.func.count()).select_from(usage_records))
                return int(result.scalar_one())
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"reading the usage database failed: {_describe(exc)}") from exc

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def _describe(exc: BaseException) -> str:
    # DBAPIError's text repeats the statement and its parameters (prompts, when log_content is on): name the
    # driver's error only.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0] if str(exc.orig) else ''}"
    return f"{type(exc).__name__}: {exc}"
