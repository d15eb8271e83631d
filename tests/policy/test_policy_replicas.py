"""Two real `integration-api serve` processes sharing one data directory and the real Redis: a key's limits hold
for the sum over both. And a server whose Redis is unreachable, in each `rate_limit_fail_mode`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import grpc
import pytest

from auth import ApiKeyStore
from auth.principal import KeyScope
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request

TEXT = "one two three four"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(data_dir: Path, redis_url: str, **env: str) -> AsyncIterator[tuple[int, Callable[[], str]]]:
    """One gateway process on a port of its own; yields the port and a reader of what it logged so far."""
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    environment = {
        **os.environ,
        "INTEGRATION_API_PORT": str(port),
        "INTEGRATION_API_HTTP_PORT": "0",  # gRPC only
        "INTEGRATION_API_DATA_DIR": str(data_dir),
        "INTEGRATION_API_REDIS_URL": redis_url,
        "INTEGRATION_API_GRACE_PERIOD_S": "1",
        **{f"INTEGRATION_API_{name.upper()}": value for name, value in env.items()},
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "integration_api.cli", "serve"], env=environment, stderr=output, stdout=output
        )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
        yield port, log.read_text
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def stream_to(port: int, key: str) -> AsyncIterator[StreamDriver]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.UnifiedProviderServiceStub(channel)
        yield StreamDriver(stub.StreamChat(metadata=(("x-api-key", key),)))


async def run(stream: StreamDriver, request: pb.ChatRequest) -> pb.ChatResponse:
    await stream.send(request)
    return (await stream.read_until_done([request.requestId], timeout=20)).terminal(request.requestId)


async def test_two_replicas_share_the_limits(tmp_path: Path, redis_server: str) -> None:
    store = ApiKeyStore(tmp_path)
    # 4 per minute: the next one would be admitted 15 s later, far more than this test takes.
    rpm_key, _ = store.create("rpm", "org", "proj", scope=KeyScope(rpm=4))
    one_at_a_time, _ = store.create("conc", "org", "proj", scope=KeyScope(max_concurrent=1))
    async with AsyncExitStack() as stack:
        first, _ = await stack.enter_async_context(serve(tmp_path, redis_server))
        second, _ = await stack.enter_async_context(serve(tmp_path, redis_server))
        a = await stack.enter_async_context(stream_to(first, rpm_key))
        b = await stack.enter_async_context(stream_to(second, rpm_key))
        outcomes = [(await run(s, chat_request(f"r{n}", TEXT, provider="simulated"))) for n in range(3) for s in (a, b)]
        assert sum(o.success for o in outcomes) == 4  # not 4 per replica: 4 in all
        refused = [o for o in outcomes if not o.success]
        assert len(refused) == 2 and all(o.error.status == "RESOURCE_EXHAUSTED" for o in refused)
        assert all(o.error.retryAfterMs > 0 for o in refused)

        slow_stream = await stack.enter_async_context(stream_to(first, one_at_a_time))
        other_stream = await stack.enter_async_context(stream_to(second, one_at_a_time))
        slow = chat_request("slow", " ".join(["w"] * 200), provider="simulated", simulated_delay_ms=20)
        await slow_stream.send(slow)
        slow_stream.collected.add(await slow_stream.call.read())  # its first delta: it holds the key's one slot
        elsewhere = await run(other_stream, chat_request("elsewhere", TEXT, provider="simulated"))
        assert (
            elsewhere.error.status == "RESOURCE_EXHAUSTED" and "concurrent requests (1)" in elsewhere.error.errorMessage
        )
        await slow_stream.send(cancel_request("slow"))
        await slow_stream.read_until_done(["slow"])
        # The release is settled in the background: wait for the slot to come back, as a client would.
        for _attempt in range(100):
            again = await run(other_stream, chat_request(f"again{_attempt}", TEXT, provider="simulated"))
            if again.success:
                break
            await asyncio.sleep(again.error.retryAfterMs / 1000 / 10)
        assert again.success


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/11"


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_unreachable(tmp_path: Path, mode: str) -> None:
    key, _ = ApiKeyStore(tmp_path).create("k", "org", "proj", scope=KeyScope(rpm=2))
    async with serve(tmp_path, closed_port_url(), rate_limit_fail_mode=mode) as (port, logged):
        async with stream_to(port, key) as stream:
            outcomes = [await run(stream, chat_request(f"d{n}", TEXT, provider="simulated")) for n in range(4)]
            if mode == "open":
                # This process's own counts: 2 per minute, the other two refused with their wait.
                assert [o.success for o in outcomes] == [True, True, False, False]
                assert outcomes[2].error.status == "RESOURCE_EXHAUSTED"
                assert logged().count("rate limits: Redis is unreachable") == 1
            else:
                assert all(o.error.status == "UNAVAILABLE" and o.error.retryable for o in outcomes)
                assert "rate_limit_fail_mode is closed" in outcomes[0].error.errorMessage
            # A key without limits needs no limiter: it is served either way.
            free, _ = ApiKeyStore(tmp_path).create("free", "org", "other")
        async with stream_to(port, free) as unlimited:
            assert (await run(unlimited, chat_request("free", TEXT, provider="simulated"))).success
