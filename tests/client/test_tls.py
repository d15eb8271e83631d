"""TLS: a gateway serving a self-signed certificate generated here; clients trusting it, or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_api.client import APIConnectionError, AsyncClient, Client
from tests.certificates import self_signed
from tests.client.conftest import SIM, target_of, user
from tests.conftest import RunningGateway, make_settings, start_gateway


@pytest.fixture
async def tls_gateway(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    running = await start_gateway(make_settings(tmp_path, tls_cert_file=cert_file, tls_key_file=key_file))
    yield running, cert_file
    await running.channel.close()
    await running.server.stop()


async def test_async_client_over_tls(tls_gateway: tuple[RunningGateway, Path]) -> None:
    gateway, cert_file = tls_gateway
    async with AsyncClient(target_of(gateway), api_key=gateway.api_key, root_certificates=cert_file) as client:
        await client.check_connection()
        async with client.stream(SIM) as stream:
            assert await stream.chat(user("over tls")).text() == "over tls"


async def test_sync_client_over_tls_with_pem_bytes(tls_gateway: tuple[RunningGateway, Path]) -> None:
    gateway, cert_file = tls_gateway

    def run() -> str:
        pem = cert_file.read_bytes()
        with Client(target_of(gateway), api_key=gateway.api_key, root_certificates=pem) as client:
            return client.chat(user("sync over tls"), provider=SIM).text

    assert await asyncio.to_thread(run) == "sync over tls"


async def test_untrusted_certificate_and_plaintext_are_refused(tls_gateway: tuple[RunningGateway, Path]) -> None:
    gateway, _ = tls_gateway
    async with AsyncClient(target_of(gateway), api_key=gateway.api_key, tls=True, timeout=5) as system_roots:
        with pytest.raises(APIConnectionError):
            await system_roots.check_connection()
    async with AsyncClient(target_of(gateway), api_key=gateway.api_key, timeout=5) as plaintext:
        with pytest.raises(APIConnectionError):
            await plaintext.check_connection()


def test_tls_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls=False"):
        AsyncClient("127.0.0.1:1", tls=False, root_certificates=b"pem")
    with pytest.raises(FileNotFoundError):
        AsyncClient("127.0.0.1:1", root_certificates=tmp_path / "missing.pem")
