"""SIGTERM on a real `integration-api serve` process: in-flight requests finish within the grace period (or end
with one UNAVAILABLE error frame), new streams are refused, and the process exits."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from auth import issue_service_token
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.grpc_helpers import StreamDriver, chat_request

SECRET = "shutdown-test-secret-long-enough-for-hs256"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {
        **os.environ,
        "INTEGRATION_API_PORT": str(port),
        "INTEGRATION_API_DATA_DIR": str(tmp_path),
        "INTEGRATION_API_JWT_SECRET": SECRET,
        "INTEGRATION_API_GRACE_PERIOD_S": "2",
        "INTEGRATION_API_HTTP_PORT": "0",  # gRPC only: never bind the default HTTP port 8080 in tests
    }
    process = subprocess.Popen([sys.executable, "-m", "integration_api.cli", "serve"], env=env, stderr=subprocess.PIPE)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=20)
    yield process, port
    if process.poll() is None:
        process.kill()
    process.wait()


async def test_sigterm_lets_in_flight_requests_finish(served: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = served
    token = issue_service_token(SECRET, organization_id="org", project_id="proj")
    metadata = (("x-internal-service-key", token),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.UnifiedProviderServiceStub(channel)
        stream = StreamDriver(stub.StreamChat(metadata=metadata))
        quick = [chat_request(f"quick-{n}", "a b c d e", simulated_delay_ms=100) for n in range(3)]
        slow = chat_request("too-slow", " ".join(["w"] * 100), simulated_delay_ms=100)  # ~10 s: beyond the grace
        await stream.send(*quick, slow)
        stream.collected.add(await stream.call.read())
        process.send_signal(signal.SIGTERM)
        collected = await stream.read_to_end(timeout=10)
        for request in quick:
            assert collected.terminal(request.requestId).success
            assert collected.text(request.requestId) == "a b c d e"
        late = collected.terminal("too-slow")
        assert late.error.status == "UNAVAILABLE" and late.error.retryable
        assert await stream.call.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            again = StreamDriver(stub.StreamChat(metadata=metadata))
            await again.send(chat_request("new", "hi"))
            await again.read_to_end(timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(process.wait, 10) == 0
