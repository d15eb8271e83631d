"""Fixtures that start a real gateway on 127.0.0.1 port 0 and talk to it through a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from auth import ApiKeyStore, Authenticator
from integration_api.pipeline import Layer
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from integration_api.server import GatewayServer
from integration_api.settings import Settings
from providers.registry import default_registry
from tests.grpc_helpers import StreamDriver
from tests.probe import ProbeLog, probe_spec

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"


@dataclass
class RunningGateway:
    server: GatewayServer
    channel: grpc.aio.Channel
    api_key: str
    store: ApiKeyStore
    probe: ProbeLog

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),)

    @property
    def unified(self) -> pb_grpc.UnifiedProviderServiceStub:
        return pb_grpc.UnifiedProviderServiceStub(self.channel)

    def open_stream(self, metadata: tuple[tuple[str, str], ...] | None = None) -> StreamDriver:
        return StreamDriver(self.unified.StreamChat(metadata=self.metadata if metadata is None else metadata))


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "jwt_secret": JWT_SECRET,
        "retry_initial_backoff_s": 0.01,
        "retry_max_backoff_s": 0.05,
        "grace_period_s": 2.0,
        "allowed_base_urls": ("http://127.0.0.1:*",),
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


async def start_gateway(settings: Settings, layers: Sequence[Layer] = ()) -> RunningGateway:
    probe = ProbeLog()
    registry = default_registry()
    registry.register(probe_spec(probe))
    store = ApiKeyStore(settings.data_dir)
    server = GatewayServer(
        settings, registry=registry, authenticator=Authenticator(settings, store=store), layers=layers
    )
    port = await server.start()
    api_key, _ = store.create(name="tests", organization_id="org-1", project_id="proj-1")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return RunningGateway(server, channel, api_key, store, probe)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(settings)
    yield running
    await running.channel.close()
    await running.server.stop()
