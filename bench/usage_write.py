"""Usage-log write throughput (issue 13): records/s through each `UsageStore`, in the server's batches.

Two paths per store: the store alone (``write`` of ready batches: what the database takes), and the whole log
(``UsageLog.record`` for every record on the event loop, then its writer batching them, then ``aclose``: what
the server does). Target: >= 20,000 records/s into SQLite and into PostgreSQL.

    python -m bench.usage_write [--quick] [--records N] [--batch 500] [--database-url postgresql://...]

SQLite writes a file in a temporary directory; PostgreSQL (default: the local server, trust auth) gets a database
of its own, created empty (migrated like a server would at start-up) and dropped at the end. Results go to
``bench/results/usage_write.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from integration_api.usage import UsageLog, UsageRecord, UsageStore
from integration_api.usage.postgres_store import PostgresUsageStore
from integration_api.usage.sqlite_store import SqliteUsageStore

TARGET = 20_000
OUT = Path(__file__).resolve().parent / "results"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def records(count: int) -> list[UsageRecord]:
    now = time.time()
    return [
        UsageRecord(
            now,
            f"req-{i}",
            f"stream-{i // 16}",
            "acme",
            f"project-{i % 4}",
            "Key123456789",
            None,
            "api_key",
            "StreamChat",
            "openai",
            "gpt-4o-mini",
            "OK" if i % 50 else "UNAVAILABLE",
            200,
            120,
            480,
            0.0012,
            85.0,
            910.5,
            0,
        )
        for i in range(count)
    ]


async def store_alone(store: UsageStore, batch: list[UsageRecord], size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(batch), size):
        await store.write(batch[start : start + size])
    return time.perf_counter() - started


async def through_the_log(store: UsageStore, batch: list[UsageRecord], size: int) -> float:
    log = UsageLog(store, batch_size=size, flush_interval_s=1.0)
    started = time.perf_counter()
    for index, record in enumerate(batch):
        log.record(record)
        if index % size == size - 1:
            await asyncio.sleep(0)  # requests end on the loop between records: the writer gets its turns
    await log.aclose()  # the last partial batch, and the store closed (a new one is opened per run)
    return time.perf_counter() - started


async def measure(name: str, opener: Callable[[], UsageStore], count: int, size: int) -> list[dict[str, Any]]:
    rows = []
    batch = records(count)
    paths: dict[str, Callable[[UsageStore, list[UsageRecord], int], Awaitable[float]]] = {
        "store.write": store_alone,
        "UsageLog": through_the_log,
    }
    for path, run in paths.items():
        store = opener()
        await store.start()
        before = await store.count()
        seconds = await run(store, batch, size)
        if path == "store.write":
            written = await store.count() - before
            await store.aclose()
        else:
            check = opener()
            written = await check.count() - before
            await check.aclose()
        assert written == count, f"{name} {path}: {written} of {count} records written"
        rate = count / seconds
        rows.append(
            {
                "store": name,
                "path": path,
                "records": count,
                "batch": size,
                "seconds": round(seconds, 3),
                "records_per_s": round(rate),
                "target": TARGET,
                "pass": rate >= TARGET,
            }
        )
        print(f"  {name:10} {path:12} {rate:>10,.0f} records/s", file=sys.stderr)
    return rows


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN, timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    count, size = args.records or (20_000 if args.quick else 200_000), args.batch
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="usage-bench-") as directory:
        rows += await measure("sqlite", lambda: SqliteUsageStore(Path(directory)), count, size)
    url, created = args.database_url, None
    if url is None:
        created = f"ia_bench_{secrets.token_hex(4)}"
        await _admin(f'CREATE DATABASE "{created}"')
        url = f"postgresql://postgres@127.0.0.1:5432/{created}"
    try:
        rows += await measure("postgresql", lambda: PostgresUsageStore(url), count, size)
    finally:
        if created is not None:
            await _admin(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| store | path | records | batch | records/s | target | |", "|---|---|--:|--:|--:|--:|---|"]
    for row in rows:
        lines.append(
            f"| {row['store']} | {row['path']} | {row['records']:,} | {row['batch']} | {row['records_per_s']:,} |"
            f" >= {row['target']:,} | {'PASS' if row['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 records per run instead of 200,000")
    parser.add_argument("--records", type=int, help="records per run")
    parser.add_argument("--batch", type=int, default=500, help="records per batch (the server's default: 500)")
    parser.add_argument("--database-url", help="PostgreSQL to write into (default: a new database on 127.0.0.1)")
    parser.add_argument("--out", type=Path, default=OUT)
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    table = markdown(results)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "usage_write.md").write_text(table + "\n")
    (arguments.out / "usage_write.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table)
