"""The `UsageStore` contract, on SQLite and on the real PostgreSQL: batches written whole, sums per group, filters,
the schema migrated from an empty database (and by several stores at once), failures as Unavailable."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest

from integration_api.errors import Unavailable
from integration_api.settings import Settings
from integration_api.usage import UsageQuery, UsageRecord, UsageStore, open_usage_store
from integration_api.usage.postgres_store import PostgresUsageStore
from integration_api.usage.sqlite_store import SqliteUsageStore

T0 = 1_800_000_000.0  # a fixed start: 2027-01-15 08:00 UTC


def record(index: int, *, project: str = "chat", status: str = "OK", time: float = T0, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "time": time + index,
        "request_id": f"r{index}",
        "stream_id": "s1",
        "organization_id": "acme",
        "project_id": project,
        "key_id": "Key123456789",
        "user_id": None,
        "auth_method": "api_key",
        "rpc": "StreamChat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status": status,
        "code": 200 if status == "OK" else 499 if status == "CANCELLED" else 503,
        "input_tokens": 10,
        "output_tokens": 20,
        "cost": 0.5,
        "ttft_ms": 12.5,
        "total_ms": 40.25,
        "retries": 0,
        **fields,
    }
    return UsageRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
async def store(usage_settings: Settings):
    opened = open_usage_store(usage_settings)
    await opened.start()
    yield opened
    await opened.aclose()


async def test_records_come_back_as_written(store: UsageStore) -> None:
    written = [
        record(1),
        record(2, status="UNAVAILABLE", retries=2, ttft_ms=None, key_id=None, user_id="u-7", auth_method="jwt"),
        record(3, prompt="what is 2+2?", reply="4", model="", cost=0.0),
    ]
    await store.write(written)
    assert await store.count() == 3
    assert list(reversed(await store.recent())) == written
    assert [r.request_id for r in await store.recent(2)] == ["r3", "r2"]


async def test_sums_per_group_with_filters(store: UsageStore) -> None:
    await store.write([record(i, project="chat") for i in range(5)])
    await store.write([record(10 + i, project="web", status="UNAVAILABLE", input_tokens=1) for i in range(3)])
    await store.write([record(20, project="web", status="CANCELLED", output_tokens=0, model="gpt-4o")])
    await store.write([record(30, project="chat", time=T0 - 7200, provider="anthropic")])  # two hours earlier

    rows = [row.as_dict() for row in await store.summarize(UsageQuery(group_by=("project",)))]
    assert rows == [
        {
            "project": "chat",
            "requests": 6,
            "errors": 0,
            "cancelled": 0,
            "input_tokens": 60,
            "output_tokens": 120,
            "cost": 3.0,
        },
        {
            "project": "web",
            "requests": 4,
            "errors": 3,
            "cancelled": 1,
            "input_tokens": 13,
            "output_tokens": 60,
            "cost": 2.0,
        },
    ]
    by_model = await store.summarize(UsageQuery(project="web", group_by=("provider", "model")))
    assert [(row.keys, row.requests) for row in by_model] == [
        ({"provider": "openai", "model": "gpt-4o"}, 1),
        ({"provider": "openai", "model": "gpt-4o-mini"}, 3),
    ]
    recent = await store.summarize(UsageQuery(since=T0 - 60, group_by=("provider",)))
    assert [(row.keys, row.requests) for row in recent] == [({"provider": "openai"}, 9)]
    total = await store.summarize(UsageQuery(group_by=()))
    assert [(row.keys, row.requests, row.errors) for row in total] == [({}, 10, 3)]
    by_day = await store.summarize(UsageQuery(group_by=("day", "status")))
    assert [(row.keys, row.requests) for row in by_day] == [
        ({"day": "2027-01-15", "status": "CANCELLED"}, 1),
        ({"day": "2027-01-15", "status": "OK"}, 6),
        ({"day": "2027-01-15", "status": "UNAVAILABLE"}, 3),
    ]
    assert await store.summarize(UsageQuery(project="nobody")) == []
    assert await store.summarize(UsageQuery(project="nobody", group_by=())) == []


def test_unknown_group_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot group by colour"):
        UsageQuery(group_by=("project", "colour"))


async def test_the_empty_database_is_migrated_to_head(empty_database: str) -> None:
    store = PostgresUsageStore(empty_database)
    await store.start()
    await store.write([record(1)])
    await store.aclose()
    connection = await asyncpg.connect(empty_database)
    try:
        assert await connection.fetchval("SELECT version_num FROM alembic_version") == "0001"
        indexes = {row["indexname"] for row in await connection.fetch("SELECT indexname FROM pg_indexes")}
        assert {"usage_records_by_time", "usage_records_by_project"} <= indexes
        assert await connection.fetchval("SELECT count(*) FROM usage_records") == 1
    finally:
        await connection.close()
    again = PostgresUsageStore(empty_database)  # at head already: starting again changes nothing
    await again.start()
    assert await again.count() == 1
    await again.aclose()


async def test_several_stores_migrating_at_once_agree(empty_database: str) -> None:
    stores = [PostgresUsageStore(empty_database) for _ in range(4)]
    await asyncio.gather(*(store.start() for store in stores))
    await asyncio.gather(*(store.write([record(i)]) for i, store in enumerate(stores)))
    assert await stores[0].count() == 4
    await asyncio.gather(*(store.aclose() for store in stores))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the socket closes


async def test_an_unreachable_database_is_unavailable() -> None:
    store = PostgresUsageStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing")
    with pytest.raises(Unavailable, match="cannot be migrated"):
        await store.start()
    with pytest.raises(Unavailable):
        await store.write([record(1)])
    await store.aclose()


async def test_an_unwritable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "usage.sqlite3").mkdir()  # a directory where the file should be
    store = SqliteUsageStore(tmp_path)
    with pytest.raises(Unavailable, match="usage store"):
        await store.write([record(1)])
    await store.aclose()
