"""Fixtures for the HTTP front door: a real gateway with HTTP on 127.0.0.1 port 0, and OpenAI SDK clients on it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration_api.settings import Settings
from tests.conftest import RunningGateway, make_settings, start_gateway


@dataclass
class HttpGateway:
    running: RunningGateway
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def api_key(self) -> str:
        return self.running.api_key


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def start_http_gateway(settings: Settings) -> HttpGateway:
    running = await start_gateway(settings)
    port = await running.server.start_http(free_socket())
    return HttpGateway(running, port)


async def stop_http_gateway(gateway: HttpGateway) -> None:
    await gateway.running.channel.close()
    await gateway.running.server.stop()


@pytest.fixture
def http_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def http_gateway(http_settings: Settings) -> AsyncIterator[HttpGateway]:
    gateway = await start_http_gateway(http_settings)
    yield gateway
    await stop_http_gateway(gateway)
