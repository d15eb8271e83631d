"""How many usage records a kill -9 loses (issue 13): a real ``integration-api serve`` (SQLite usage log, the
default batch size and flush interval unless given), under steady load, killed with SIGKILL mid-load.

Every request whose terminal frame the client received had its record queued; the records the database holds
afterwards were written; the difference is what the kill lost. It is compared with the requests completed in the
last flush interval before the kill (the bound the design promises: at most one interval's worth, plus the batch
being written).

    python -m bench.usage_kill9 [--streams 20] [--seconds 5] [--flush-interval 1] [--batch 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc

from auth import ApiKeyStore
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc

LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


def _request(request_id: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        requestId=request_id,
        providerName="simulated",
        conversations=[pb.Message(role="user", user=pb.UserMessage(content="one two three four five"))],
    )


async def _stream(stub: pb_grpc.UnifiedProviderServiceStub, key: str, number: int, done: list[float]) -> None:
    """One request at a time on one stream, forever; appends the completion time of each."""
    call = stub.StreamChat(metadata=(("x-api-key", key),))
    sequence = 0
    while True:
        rid = f"s{number}-{sequence}"
        await call.write(_request(rid))
        while True:
            frame = await call.read()
            if frame is grpc.aio.EOF:
                return
            if frame.requestId == rid and (frame.final or (not frame.success and frame.HasField("error"))):
                done.append(time.monotonic())
                break
        sequence += 1


async def run_once(args: argparse.Namespace, directory: Path) -> dict[str, float]:
    key, _ = ApiKeyStore(directory).create(name="kill9", organization_id="acme", project_id="kill9")
    env = {
        **os.environ,
        "INTEGRATION_API_PORT": "0",
        "INTEGRATION_API_HTTP_PORT": "0",
        "INTEGRATION_API_DATA_DIR": str(directory),
        "INTEGRATION_API_PRELOAD_PROVIDERS": "false",
        "INTEGRATION_API_USAGE_FLUSH_INTERVAL_S": str(args.flush_interval),
        "INTEGRATION_API_USAGE_BATCH_SIZE": str(args.batch),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integration_api.cli", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    port = 0
    while line := await process.stderr.readline():
        if match := LISTENING.search(line):
            port = int(match.group(1))
            break
    drain = asyncio.ensure_future(process.stderr.read())
    done: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.UnifiedProviderServiceStub(channel)
        streams = [asyncio.ensure_future(_stream(stub, key, n, done)) for n in range(args.streams)]
        await asyncio.sleep(args.seconds)  # the load runs this long (a measurement window, not synchronisation)
        process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        completed = len(done)  # no frame can arrive from a killed process: this is final
        await process.wait()
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    await drain
    with sqlite3.connect(directory / "usage.sqlite3") as connection:
        stored = int(connection.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0])
    last_interval = sum(1 for moment in done if moment >= killed_at - args.flush_interval)
    return {
        "completed": completed,
        "stored": stored,
        "lost": completed - stored,
        "completed_in_last_interval": last_interval,
        "requests_per_s": completed / args.seconds,
    }


async def main(args: argparse.Namespace) -> None:
    print("| run | requests completed | records stored | lost | completed in the last interval | requests/s |")
    print("|--:|--:|--:|--:|--:|--:|")
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="usage-kill9-") as directory:
            result = await run_once(args, Path(directory))
        print(
            f"| {run} | {result['completed']:,.0f} | {result['stored']:,.0f} | {result['lost']:,.0f} |"
            f" {result['completed_in_last_interval']:,.0f} | {result['requests_per_s']:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
