"""Real `serve` processes: JSON-lines logs with each request's access line, /metrics on INTEGRATION_API_METRICS_PORT
with HTTP off, and one scrape adding up every worker of `serve --workers 2`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from integration_api.observability.json_logs import JsonFormatter
from integration_api.observability.worker_metrics import load
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.grpc_helpers import StreamDriver, chat_request
from tests.observability.test_metrics import parse, value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(tmp_path: Path, log: Path, *args: str, **env_overrides: str) -> subprocess.Popen[bytes]:
    env = {name: v for name, v in os.environ.items() if not name.startswith(("INTEGRATION_API_", "OTEL_"))}
    env |= {
        "INTEGRATION_API_DATA_DIR": str(tmp_path),
        "INTEGRATION_API_AUTH_DISABLED": "true",
        "INTEGRATION_API_PRELOAD_PROVIDERS": "false",
        "INTEGRATION_API_GRACE_PERIOD_S": "5",
        **env_overrides,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "integration_api.cli", "serve", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _get(url: str, timeout_s: float = 30.0) -> httpx.Response:
    async with asyncio.timeout(timeout_s), httpx.AsyncClient(timeout=10) as http:
        while True:
            try:
                return await http.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_json_logs_and_the_metrics_port_with_http_off(tmp_path: Path) -> None:
    grpc_port, metrics_port = _free_port(), _free_port()
    log = tmp_path / "serve.log"
    process = _serve(
        tmp_path,
        log,
        "--no-http",
        INTEGRATION_API_PORT=str(grpc_port),
        INTEGRATION_API_METRICS_PORT=str(metrics_port),
        INTEGRATION_API_LOG_FORMAT="json",
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stream = StreamDriver(pb_grpc.UnifiedProviderServiceStub(channel).StreamChat())
            await stream.send(chat_request("json-1", "a b c", provider="simulated", name="echo"))
            collected = await stream.read_until_done(["json-1"])
            assert collected.terminal("json-1").success
            await stream.call.done_writing()
            await stream.read_to_end()
        response = await _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert response.status_code == 200
        samples = parse(response.text)
        labels = {"provider": "simulated", "model": "other", "rpc": "StreamChat"}
        assert value(samples, "integration_api_requests_total", **labels, code="200") == 1
    finally:
        assert await asyncio.to_thread(_stop, process) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    (access,) = [line for line in lines if line["logger"] == "integration_api.access"]
    assert access["level"] == "INFO"
    assert access["request_id"] == "json-1" and access["provider"] == "simulated" and access["model"] == "echo"
    assert access["code"] == 200 and access["status"] == "OK" and access["rpc"] == "StreamChat"
    assert access["stream_id"] and access["principal"] and access["total_ms"] > 0 and access["ttft_ms"] > 0
    assert not any("HTTP (OpenAI-compatible API" in line["message"] for line in lines)  # HTTP stayed off


def test_the_json_formatter_keeps_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("integration_api.test").makeRecord(
            "integration_api.test", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and line["level"] == "ERROR" and line["logger"] == "integration_api.test"
    assert "ValueError: boom" in line["exc_info"] and line["time"].endswith("+00:00")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    grpc_port, http_port = _free_port(), _free_port()
    process = _serve(
        tmp_path,
        tmp_path / "serve.log",
        "--workers",
        "2",
        INTEGRATION_API_PORT=str(grpc_port),
        INTEGRATION_API_HTTP_PORT=str(http_port),
    )
    yield grpc_port, http_port
    assert _stop(process) == 0


async def test_one_scrape_adds_up_every_worker(tmp_path: Path, workers: tuple[int, int]) -> None:
    grpc_port, http_port = workers
    directory_root = tmp_path / "metrics"
    sent = 0
    # New connections until both workers have served some (SO_REUSEPORT spreads connections, not requests).
    async with asyncio.timeout(60):
        while True:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                await channel.channel_ready()
                stream = StreamDriver(pb_grpc.UnifiedProviderServiceStub(channel).StreamChat())
                await stream.send(chat_request(f"r{sent}", "a b", provider="simulated"))
                await stream.read_until_done([f"r{sent}"])
                sent += 1
                await stream.call.done_writing()
                await stream.read_to_end()
            published = [load(p.read_bytes()) for p in directory_root.glob("serve-*/*.json")]
            served = [sum(sum(c.codes.values()) for c in view.series.values()) for view in published]
            if len(served) == 2 and all(served):
                break
            await asyncio.sleep(0.05)  # let the publishers write their second
    # Whichever worker answers the scrape, the sum is every request (the other's at most a second late).
    async with asyncio.timeout(30):
        while True:
            response = await _get(f"http://127.0.0.1:{http_port}/metrics")
            total = sum(v for (name, _), v in parse(response.text).items() if name == "integration_api_requests_total")
            if total == sent:
                break
            assert total < sent
            await asyncio.sleep(0.1)
