"""Fixtures for the usage-log tests: both stores (SQLite in a temporary data directory, the local PostgreSQL on a
database of this run's own, created empty and dropped at the end), and reading a store's records."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from integration_api.settings import Settings
from integration_api.usage import UsageRecord, open_usage_store
from tests.conftest import make_settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STORES = ("sqlite", "postgres")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN, timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> str:
    """A new, empty database; returns its URL."""
    name = f"ia_test_b_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """Skips the PostgreSQL cases when no server answers on 127.0.0.1:5432 (trust auth, user postgres)."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL answers on 127.0.0.1:5432 ({exc}): start one to test the PostgreSQL store")


@pytest.fixture
def empty_database(postgres_server: None) -> Iterator[str]:
    """The URL of a database created for this test, empty (no schema), dropped after it."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def database_url(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite; for PostgreSQL a fresh database of this test's own."""
    if store_kind != "postgres":
        return None
    url: str = request.getfixturevalue("empty_database")
    return url


@pytest.fixture
def usage_settings(tmp_path: Path, database_url: str | None) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


async def read_records(settings: Settings, limit: int = 10_000) -> list[UsageRecord]:
    """Every record the settings' store holds, oldest first (read through a store of its own)."""
    store = open_usage_store(settings)
    try:
        return list(reversed(await store.recent(limit)))
    finally:
        await store.aclose()
