"""Fixtures for the client tests: a real gateway (``tests.conftest.gateway``) and clients connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from integration_api.client import AsyncClient, Client
from tests.conftest import RunningGateway

SIM = "simulated"
PROBE = "probe"  # the simulated provider, observed (tests/probe.py)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def target_of(gateway: RunningGateway) -> str:
    return f"127.0.0.1:{gateway.server.port}"


def async_client_for(gateway: RunningGateway, **options: Any) -> AsyncClient:
    return AsyncClient(target_of(gateway), api_key=gateway.api_key, **options)


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[AsyncClient]:
    async with async_client_for(gateway) as connected:
        yield connected


@pytest.fixture
def sync_client(gateway: RunningGateway) -> Iterator[Client]:
    with Client(target_of(gateway), api_key=gateway.api_key) as connected:
        yield connected
