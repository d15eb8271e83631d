"""Fixtures for the session tests: both stores (SQLite in a temporary data dir, the local Redis on a database of
its own), and a gateway whose sessions run on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.fake_clock import FakeClock
from tests.grpc_helpers import StreamDriver, chat_request, packed_value

REDIS_DB = 9  # a database of its own, flushed when the test run starts and when it ends
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
STORES = ("sqlite", "redis")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The local Redis, its test database empty; skips the Redis cases when none answers on 127.0.0.1:6379."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        client.close()
        pytest.skip(f"no Redis answers on 127.0.0.1:6379 ({exc}): start one (redis-server) to test the Redis store")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def redis_url(store_kind: str, request: pytest.FixtureRequest) -> str | None:
    if store_kind != "redis":
        return None
    url: str = request.getfixturevalue("redis_server")
    redis.Redis.from_url(url).flushdb()  # each test starts with no session of an earlier one
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=1_800_000_000.0)  # Unix seconds: sessions keep wall-clock times


@dataclass
class SessionGateway:
    running: RunningGateway
    clock: FakeClock

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.running.metadata

    @property
    def sessions(self) -> pb_grpc.SessionServiceStub:
        return pb_grpc.SessionServiceStub(self.running.channel)

    def open_stream(self, metadata: tuple[tuple[str, str], ...] | None = None) -> StreamDriver:
        return self.running.open_stream(metadata)

    async def create(
        self, system_prompt: str = "", provider: str = "simulated", metadata: Any = None, **params: Any
    ) -> pb.SessionInfo:
        request = pb.CreateSessionRequest(
            providerName=provider,
            systemPrompt=system_prompt,
            modelParameters={f"model.{name}": packed_value(value) for name, value in params.items()},
        )
        response = await self.sessions.CreateSession(request, metadata=metadata or self.metadata)
        session: pb.SessionInfo = response.session
        return session

    async def info(self, session_id: str, metadata: Any = None) -> pb.SessionInfo:
        request = pb.GetSessionInfoRequest(sessionId=session_id, includeMessages=True)
        session: pb.SessionInfo = (
            await self.sessions.GetSessionInfo(request, metadata=metadata or self.metadata)
        ).session
        return session

    def other_project_metadata(self) -> tuple[tuple[str, str], ...]:
        key, _ = self.running.store.create(name="other", organization_id="org-2", project_id="proj-2")
        return (("x-api-key", key),)


def turn(request_id: str, text: str, session_id: str, **params: Any) -> pb.ChatRequest:
    request = chat_request(request_id, text, provider="simulated", **params)
    request.sessionId = session_id
    return request


async def start(tmp_path: Path, clock: FakeClock, redis_url: str | None, **overrides: Any) -> SessionGateway:
    running = await start_gateway(make_settings(tmp_path, redis_url=redis_url, **overrides))
    running.server.gateway.state.sessions.clock = clock
    return SessionGateway(running, clock)


async def stop(gateway: SessionGateway) -> None:
    await gateway.running.channel.close()
    await gateway.running.server.stop()


@pytest.fixture
async def gateway(tmp_path: Path, clock: FakeClock, redis_url: str | None) -> AsyncIterator[SessionGateway]:
    running = await start(tmp_path, clock, redis_url)
    yield running
    await stop(running)


def status_of(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = error.code()
    return code
