"""Bringing a PostgreSQL database's usage schema up to date: ``alembic upgrade head``, run programmatically.

Several processes may start at once (``serve --workers N``, replicas): each takes a transaction-scoped advisory
lock first, so exactly one runs the migrations and the others find the schema at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
ADVISORY_LOCK = 0x1A_05A6E  # any constant of ours: "the usage schema is being migrated"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def async_url(url: str) -> str:
    """`url` with the asyncpg driver (``postgresql://`` and ``postgres://`` accepted as they are usually written)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Migrate the database to the newest revision, one process at a time."""
    async with engine.begin() as connection:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        await connection.run_sync(_upgrade)
