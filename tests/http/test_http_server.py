"""The HTTP server itself: a client disconnect cancels the upstream call, SSE pings while the first token is slow,
and the graceful drain (in-flight streams finish, new connections are refused)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from integration_api.settings import Settings
from integration_api.testing.emulators.base import Script
from integration_api.testing.emulators.openai import OpenAIEmulator
from tests.conftest import make_settings
from tests.http.conftest import HttpGateway, start_http_gateway, stop_http_gateway

WORDS = " ".join(f"w{i}" for i in range(200))


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": "simulated/echo", "messages": [{"role": "user", "content": "a b c d e"}], "stream": True, **extra}


async def test_client_disconnect_cancels_the_upstream_call(http_gateway: HttpGateway) -> None:
    async with OpenAIEmulator() as emulator:
        emulator.enqueue(Script(text=WORDS, chunk_delay_s=0.05))  # ~10 s if nobody stops it
        headers = {
            "authorization": f"Bearer {http_gateway.api_key}",
            "x-provider-credential": json.dumps({"key": "sk-slow", "base_url": emulator.base_url}),
        }
        body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("POST", f"{http_gateway.base_url}/chat/completions", headers=headers, json=body) as response,
        ):
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await anext(lines)
            assert first.startswith("data: ") and "w0" in first
        # The response is closed: the gateway must close the upstream call, which the emulator sees.
        await wait_until(lambda: emulator.requests and emulator.requests[-1].client_disconnected)
        assert not emulator.requests[-1].completed


async def test_client_disconnect_closes_the_provider_stream(http_gateway: HttpGateway) -> None:
    probe = http_gateway.running.probe
    headers = {"authorization": f"Bearer {http_gateway.api_key}"}
    body = chat_body(model="probe/x", simulated_reply=WORDS, simulated_delay_ms=20)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", f"{http_gateway.base_url}/chat/completions", headers=headers, json=body) as response,
    ):
        await anext(response.aiter_lines())
    await probe.wait_for(lambda: len(probe.closed) == 1)
    assert probe.finished == []


@pytest.fixture
def http_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, http_sse_ping_s=0.05)


async def test_pings_while_the_first_token_is_slow(http_gateway: HttpGateway) -> None:
    headers = {"authorization": f"Bearer {http_gateway.api_key}"}
    async with httpx.AsyncClient(timeout=10) as http:
        slow = await http.post(
            f"{http_gateway.base_url}/chat/completions", headers=headers, json=chat_body(simulated_delay_ms=500)
        )
        failing = await http.post(
            f"{http_gateway.base_url}/chat/completions",
            headers=headers,
            json=chat_body(simulated_delay_ms=500, simulated_error=503, simulated_error_after=0),
        )
    assert slow.status_code == 200
    assert slow.text.startswith(": ping\n\n")
    assert slow.text.endswith("data: [DONE]\n\n")
    # Once a ping went out the status is 200: the error comes as the stream's last event, without [DONE].
    assert failing.status_code == 200
    assert failing.text.startswith(": ping\n\n")
    last = failing.text.rstrip("\n").rsplit("\n\n", 1)[-1]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "service_unavailable"


async def test_drain_lets_the_stream_in_flight_finish_and_refuses_new_connections(tmp_path: Path) -> None:
    gateway = await start_http_gateway(make_settings(tmp_path, grace_period_s=10.0))
    drained = False
    try:
        headers = {"authorization": f"Bearer {gateway.api_key}"}
        body = chat_body(simulated_delay_ms=50)
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("POST", f"{gateway.base_url}/chat/completions", headers=headers, json=body) as response,
        ):
            lines = response.aiter_lines()
            received = [await anext(lines)]
            drain = asyncio.create_task(gateway.running.server.drain_and_stop())
            await wait_until(lambda: gateway.running.server.lifecycle.draining)
            received += [line async for line in lines]
            assert received[-2:] == ["data: [DONE]", ""]
        await drain
        drained = True
        async with httpx.AsyncClient(timeout=5) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"{gateway.base_url}/chat/completions", headers=headers, json=body)
    finally:
        if not drained:
            await stop_http_gateway(gateway)
        else:
            await gateway.running.channel.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(tmp_path: Path, grpc_port: int, http_port: int, *args: str) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("INTEGRATION_API_")}
    env |= {
        "INTEGRATION_API_PORT": str(grpc_port),
        "INTEGRATION_API_HTTP_PORT": str(http_port),
        "INTEGRATION_API_DATA_DIR": str(tmp_path),
        "INTEGRATION_API_AUTH_DISABLED": "true",
        "INTEGRATION_API_PRELOAD_PROVIDERS": "false",
        "INTEGRATION_API_GRACE_PERIOD_S": "10",
    }
    command = [sys.executable, "-m", "integration_api.cli", "serve", *args]
    with (tmp_path / "serve.log").open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _models(http: httpx.AsyncClient, port: int) -> httpx.Response:
    async with asyncio.timeout(20):
        while True:
            try:
                return await http.get(f"http://127.0.0.1:{port}/v1/models")
            except httpx.ConnectError:
                await asyncio.sleep(0.05)


async def test_serve_answers_http_and_drains_it_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = _serve(tmp_path, _free_port(), port)
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            assert (await _models(http, port)).status_code == 200
            body = chat_body(simulated_delay_ms=50)
            async with http.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as response:
                lines = response.aiter_lines()
                received = [await anext(lines)]
                process.send_signal(signal.SIGTERM)
                received += [line async for line in lines]
        assert received[-2:] == ["data: [DONE]", ""]
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_serve_no_http_serves_grpc_only(tmp_path: Path) -> None:
    grpc_port = _free_port()
    process = _serve(tmp_path, grpc_port, _free_port(), "--no-http")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "serve.log").read_text()
    assert "integration-api listening" in log
    assert "HTTP (OpenAI-compatible API" not in log  # the whole life of the process went by without HTTP
