"""Several processes sharing one data directory (``serve --workers N``, replicas on one host): the key store, the
usage log, the stored credentials and the sessions, all SQLite, written at once from separate processes. Nothing is lost and no
process sees "database is locked"."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from integration_api.credentials import generate_key
from tests.usage.concurrent_writer import BATCH, ROUNDS

PROCESSES = 4
ROOT = Path(__file__).resolve().parents[2]


async def test_processes_writing_every_store_at_once_lose_nothing(tmp_path: Path) -> None:
    key = generate_key()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    names = [f"p{index}" for index in range(PROCESSES)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.usage.concurrent_writer",
            str(tmp_path),
            name,
            key,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        for name in names
    ]
    try:
        for process in processes:  # every process is up (imports done) before any touches the files
            assert process.stdout is not None
            assert (await asyncio.wait_for(process.stdout.readline(), 60)).strip() == b"ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        results = [await asyncio.wait_for(process.communicate(), 120) for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert b"locked" not in err
        assert json.loads(out) == {
            "keys": ROUNDS,
            "usage": ROUNDS * BATCH,
            "credentials": len(range(0, ROUNDS, 4)),
            "sessions": ROUNDS,
        }

    check_stores(tmp_path, names)


def check_stores(tmp_path: Path, names: list[str]) -> None:
    def count(file: str, table: str) -> int:
        with sqlite3.connect(tmp_path / file) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    assert count("usage.sqlite3", "usage_records") == PROCESSES * ROUNDS * BATCH
    assert count("api_keys.sqlite3", "api_keys") == PROCESSES * ROUNDS
    assert count("sessions.sqlite3", "sessions") == PROCESSES * ROUNDS
    with sqlite3.connect(tmp_path / "usage.sqlite3") as connection:
        per_process = dict(
            connection.execute("SELECT project_id, COUNT(DISTINCT request_id) FROM usage_records GROUP BY 1")
        )
    assert per_process == {name: ROUNDS * BATCH for name in names}
    credential_files = list(tmp_path.glob("credentials*.sqlite3"))
    assert len(credential_files) == 1
    assert count(credential_files[0].name, "credentials") == PROCESSES * len(range(0, ROUNDS, 4))
