"""mTLS: with a client CA configured, the TLS handshake requires a client certificate it signed, and a certificate
whose subject `tls_client_principal_map` names authenticates the call by itself (its principal seen by a layer)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from auth.principal import Principal
from integration_api.context import RequestContext
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from providers.base import Provider
from tests.certificates import LOCAL_NAMES, CertificateAuthority, Issued
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import StreamDriver, chat_request

PRINCIPAL_MAP = {
    "CN=billing-service": {"organization": "acme", "project": "billing"},
    "SAN=spiffe://acme/chat": {"organization": "acme", "project": "chat", "user": "bot"},
}


@dataclass
class Seen:
    principals: list[Principal] = field(default_factory=list)

    def layer(self, inner: Provider, context: RequestContext) -> Provider:
        self.principals.append(context.principal)
        return inner


@dataclass
class MtlsGateway:
    running: RunningGateway
    ca: CertificateAuthority
    seen: Seen

    def channel(self, client: Issued | None, ca: CertificateAuthority | None = None) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.certificate,
            private_key=client.key if client else None,
            certificate_chain=client.certificate if client else None,
        )
        return grpc.aio.secure_channel(f"localhost:{self.running.server.port}", credentials)

    async def chat(self, client: Issued | None, metadata: tuple[tuple[str, str], ...] = ()) -> str:
        async with self.channel(client) as channel:
            stub = pb_grpc.UnifiedProviderServiceStub(channel)
            answer = await stub.Chat(
                chat_request("m1", "over mtls", provider="simulated"), metadata=metadata, timeout=10
            )
            return "".join(answer.data.assistant.contents)


@pytest.fixture
async def mtls(tmp_path: Path) -> AsyncIterator[MtlsGateway]:
    ca = CertificateAuthority()
    cert_file, key_file = ca.issue("localhost", LOCAL_NAMES).write(tmp_path, "server")
    settings = make_settings(
        tmp_path,
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        tls_client_ca=ca.write(tmp_path),
        tls_client_principal_map=PRINCIPAL_MAP,
    )
    seen = Seen()
    running = await start_gateway(settings, layers=[seen.layer])
    yield MtlsGateway(running, ca, seen)
    await running.channel.close()
    await running.server.stop()


async def test_a_mapped_certificate_is_the_principal(mtls: MtlsGateway) -> None:
    assert await mtls.chat(mtls.ca.issue("billing-service", client=True)) == "over mtls"
    assert mtls.seen.principals[-1] == Principal("acme", "billing", method="client_cert")
    spiffe = x509.UniformResourceIdentifier("spiffe://acme/chat")
    assert await mtls.chat(mtls.ca.issue("chat-7f3a", (spiffe,), client=True)) == "over mtls"
    assert mtls.seen.principals[-1] == Principal("acme", "chat", user_id="bot", method="client_cert")


async def test_a_mapped_certificate_authenticates_a_stream(mtls: MtlsGateway) -> None:
    async with mtls.channel(mtls.ca.issue("billing-service", client=True)) as channel:
        stream = StreamDriver(pb_grpc.UnifiedProviderServiceStub(channel).StreamChat())
        await stream.send(chat_request("s1", "streamed over mtls", provider="simulated"))
        collected = await stream.read_until_done(["s1"])
        assert collected.terminal("s1").success
        await stream.call.done_writing()
    assert mtls.seen.principals[-1].project_id == "billing"


async def test_an_unmapped_certificate_needs_a_key(mtls: MtlsGateway) -> None:
    unmapped = mtls.ca.issue("someone-else", client=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mtls.chat(unmapped)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await mtls.chat(unmapped, mtls.running.metadata) == "over mtls"
    assert mtls.seen.principals[-1].method == "api_key" and mtls.seen.principals[-1].project_id == "proj-1"


async def test_a_bad_key_next_to_a_mapped_certificate_is_refused(mtls: MtlsGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mtls.chat(mtls.ca.issue("billing-service", client=True), (("x-api-key", "ia_bad"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_no_client_certificate_fails_the_handshake(mtls: MtlsGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mtls.chat(None, mtls.running.metadata)  # a valid key does not replace the certificate
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls.seen.principals == []


async def test_a_certificate_from_another_ca_fails_the_handshake(mtls: MtlsGateway) -> None:
    stranger = CertificateAuthority("another CA").issue("billing-service", client=True)  # the mapped name, even
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mtls.chat(stranger, mtls.running.metadata)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls.seen.principals == []


def test_the_map_is_checked_at_start_up(tmp_path: Path) -> None:
    from auth.client_certs import CertificatePrincipals

    for bad in (
        {"billing": {"organization": "a", "project": "b"}},
        {"CN=x": {"organization": "a"}},
        {"CN=x": {"organization": "a", "project": "b", "scope": "all"}},
    ):
        with pytest.raises(ValueError, match="tls_client_principal_map"):
            CertificatePrincipals(bad)
    assert ipaddress.ip_address("127.0.0.1")  # LOCAL_NAMES covers the address the channel dials by name
