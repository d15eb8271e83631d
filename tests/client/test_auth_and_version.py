"""Authentication failures as typed exceptions, service tokens, and the protocol revision check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from auth import issue_service_token
from integration_api import gateway as gateway_module
from integration_api.client import (
    CLIENT_PROTOCOL_REVISION,
    AsyncClient,
    AuthenticationError,
    IncompatibleServerError,
)
from tests.client.conftest import SIM, target_of, user
from tests.conftest import JWT_SECRET, RunningGateway


async def test_stream_without_credentials_fails_every_request_with_authentication_error(
    gateway: RunningGateway,
) -> None:
    async with AsyncClient(target_of(gateway)) as client, client.stream(SIM) as stream:
        first, second = stream.chat(user("a")), stream.chat(user("b"))
        for response in (first, second):
            with pytest.raises(AuthenticationError) as caught:
                await response.text()
            error = caught.value
            assert error.status == "UNAUTHENTICATED" and error.code == 401 and not error.retryable
            assert "x-api-key" in error.message
        with pytest.raises(AuthenticationError):
            stream.chat(user("the stream is dead"))
    assert gateway.probe.started == []


async def test_unary_call_with_a_wrong_key(gateway: RunningGateway) -> None:
    async with AsyncClient(target_of(gateway), api_key="ia_nope_nope") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.embed("x", provider=SIM)
        assert caught.value.code == 401 and "ia_nope_nope" not in str(caught.value)


async def test_service_token_is_accepted(gateway: RunningGateway) -> None:
    token = issue_service_token(JWT_SECRET, organization_id="org", project_id="proj")
    async with AsyncClient(target_of(gateway), service_token=token) as client, client.stream(SIM) as stream:
        assert await stream.chat(user("with a token")).text() == "with a token"


def test_key_and_token_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        AsyncClient("127.0.0.1:1", api_key="k", service_token="t")


async def test_server_older_than_the_client_is_refused(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "PROTOCOL_REVISION", 1)
    with pytest.raises(IncompatibleServerError) as caught:
        await client.get_version()
    assert "revision 1" in str(caught.value) and f"revision {CLIENT_PROTOCOL_REVISION}" in str(caught.value)
    assert caught.value.server_revision == 1 and caught.value.client_revision == CLIENT_PROTOCOL_REVISION
    assert (await client.get_version(check=False)).protocol_revision == 1


async def test_server_requiring_a_newer_client_is_refused(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "MINIMUM_CLIENT_REVISION", CLIENT_PROTOCOL_REVISION + 1)
    with pytest.raises(IncompatibleServerError, match=f"revision {CLIENT_PROTOCOL_REVISION + 1} or newer"):
        await client.get_version()


@pytest.fixture
async def bare_grpc_server() -> AsyncIterator[int]:
    """A gRPC server with no services at all, like a gateway that predates GetVersion."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


async def test_server_without_get_version_is_refused(bare_grpc_server: int) -> None:
    async with AsyncClient(f"127.0.0.1:{bare_grpc_server}") as client:
        with pytest.raises(IncompatibleServerError, match="does not implement GetVersion") as caught:
            await client.get_version()
        assert caught.value.server_revision is None
