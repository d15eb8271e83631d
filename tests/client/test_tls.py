"""TLS: a gateway serving a self-signed certificate generated here; clients trusting it, or not."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integration_api.client import APIConnectionError, AsyncClient, Client
from tests.client.conftest import SIM, target_of, user
from tests.conftest import RunningGateway, make_settings, start_gateway


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration-api test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


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
