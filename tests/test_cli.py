"""The command line: `emulate` runs a vendor emulator standalone; `health` asks the health service."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import aiohttp
from typer.testing import CliRunner

from integration_api.cli import app
from tests.conftest import RunningGateway


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_emulate_runs_a_vendor_emulator_standalone() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "integration_api.cli", "emulate", "openai", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    url = f"http://127.0.0.1:{port}/v1/models"
                    async with session.get(url, headers={"Authorization": "Bearer k"}) as response:
                        assert response.status == 200
                        assert (await response.json())["object"] == "list"
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the emulator never answered")
    finally:
        process.terminate()
        process.wait(10)


async def test_health_command(gateway: RunningGateway) -> None:
    # The command is synchronous: run it on a thread so this loop keeps serving the gateway meanwhile.
    target = f"127.0.0.1:{gateway.server.port}"
    result = await asyncio.to_thread(CliRunner().invoke, app, ["health", "--target", target])
    assert result.exit_code == 0 and "serving" in result.output
    dead = ["health", "--target", f"127.0.0.1:{_free_port()}", "--timeout", "0.5"]
    assert (await asyncio.to_thread(CliRunner().invoke, app, dead)).exit_code == 1
