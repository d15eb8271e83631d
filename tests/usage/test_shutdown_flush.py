"""SIGTERM on a real `integration-api serve` process under load: every usage record still pending in its memory
is written before it exits (none lost), on SQLite and on the real PostgreSQL.

The flush interval and batch size are set so that nothing is written while it serves: every record the database
holds afterwards was written by the shutdown flush.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from auth import ApiKeyStore
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.conftest import make_settings
from tests.grpc_helpers import StreamDriver, chat_request
from tests.usage.conftest import read_records

STREAMS = 20
PER_STREAM = 12  # all in flight at once on each stream (below max_inflight_per_stream)
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    api_key: str
    log: list[bytes]


async def _read_port(process: asyncio.subprocess.Process, log: list[bytes]) -> int:
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while line := await process.stderr.readline():
            log.append(line)
            if match := LISTENING.search(line):
                return int(match.group(1))
    raise AssertionError(b"".join(log).decode())


async def _drain(process: asyncio.subprocess.Process, log: list[bytes]) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        log.append(line)


@pytest.fixture
async def served(tmp_path: Path, database_url: str | None) -> AsyncIterator[Served]:
    api_key, _ = ApiKeyStore(tmp_path).create(name="load", organization_id="acme", project_id="load")
    env = {
        **os.environ,
        "INTEGRATION_API_PORT": "0",
        "INTEGRATION_API_HTTP_PORT": "0",
        "INTEGRATION_API_DATA_DIR": str(tmp_path),
        "INTEGRATION_API_GRACE_PERIOD_S": "3",
        "INTEGRATION_API_PRELOAD_PROVIDERS": "false",
        "INTEGRATION_API_USAGE_FLUSH_INTERVAL_S": "3600",  # nothing is written while the server runs...
        "INTEGRATION_API_USAGE_BATCH_SIZE": "1000000",  # ...neither by time nor by size
    }
    if database_url is not None:
        env["INTEGRATION_API_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integration_api.cli", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    log: list[bytes] = []
    drainer: asyncio.Task[None] | None = None
    try:
        port = await _read_port(process, log)
        drainer = asyncio.ensure_future(_drain(process, log))  # keep reading, so the server never blocks on stderr
        yield Served(process, port, api_key, log)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drainer is not None:
            await drainer


async def test_sigterm_writes_every_pending_record(served: Served, tmp_path: Path, database_url: str | None) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    metadata = (("x-api-key", served.api_key),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        stub = pb_grpc.UnifiedProviderServiceStub(channel)
        streams = [StreamDriver(stub.StreamChat(metadata=metadata)) for _ in range(STREAMS)]
        ids: list[str] = []
        for number, stream in enumerate(streams):
            batch = [f"s{number}-r{index}" for index in range(PER_STREAM)]
            ids += batch
            await stream.send(*(chat_request(rid, "one two three four five", simulated_delay_ms=50) for rid in batch))
        await streams[0].send(chat_request("too-slow", " ".join(["w"] * 100), simulated_delay_ms=100))  # ~10 s
        ids.append("too-slow")

        async def first_frames(stream: StreamDriver, wanted: set[str]) -> None:
            while not wanted <= set(stream.collected.frames):
                stream.collected.add(await stream.call.read())

        async with asyncio.timeout(30):  # every request is streaming: each is inside the pipeline
            await asyncio.gather(
                *(
                    first_frames(stream, {rid for rid in ids if rid.startswith(f"s{number}-")})
                    for number, stream in enumerate(streams)
                )
            )
            await first_frames(streams[0], {"too-slow"})
        assert await read_records(settings) == []  # everything is still pending in the server's memory
        served.process.send_signal(signal.SIGTERM)
        collected = await asyncio.gather(*(stream.read_to_end(timeout=30) for stream in streams))
    assert await asyncio.wait_for(served.process.wait(), 30) == 0, b"".join(served.log).decode()

    terminals = {rid: frame for c in collected for rid in c.frames for frame in c.terminals(rid)}
    assert set(terminals) == set(ids)
    records = await read_records(settings, limit=10 * len(ids))
    assert sorted(r.request_id for r in records) == sorted(ids)  # one record per request, none lost
    statuses = {r.request_id: r.status for r in records}
    assert statuses.pop("too-slow") == "CANCELLED"  # still running when the grace ran out
    assert set(statuses.values()) == {"OK"}
    assert all(terminals[rid].success for rid in statuses)
    assert {(r.organization_id, r.project_id) for r in records} == {("acme", "load")}
