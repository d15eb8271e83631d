"""Alembic's entry point for the usage log's schema.

At start-up the store runs `integration_api.usage.migrate.upgrade`, which hands its own (already open, locked)
connection in ``config.attributes["connection"]``. Run by the ``alembic`` command instead, this connects to
``-x url=...`` (or ``sqlalchemy.url``) itself, with the same asyncpg driver the server uses.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from integration_api.usage.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    from integration_api.usage.migrate import async_url

    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=postgresql://user@host/db upgrade head")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run(shared)
    else:
        asyncio.run(_run_with_own_engine(_url()))
