"""INTEGRATION_API_ENABLED=false: the real clients refuse to connect; the fakes keep working."""

from __future__ import annotations

import asyncio

import pytest

from integration_api.client import ENABLED_ENV, AsyncClient, Client, ClientDisabledError
from integration_api.testing.fake import AsyncFakeClient, FakeClient
from tests.client.conftest import SIM, target_of, user
from tests.conftest import RunningGateway


@pytest.mark.parametrize("value", ["false", "0", "No", "OFF"])
async def test_switched_off_real_client_refuses_every_call(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ENABLED_ENV, value)
    async with AsyncClient(target_of(gateway), api_key=gateway.api_key) as client:
        with pytest.raises(ClientDisabledError, match=ENABLED_ENV) as caught:
            await client.check_connection()
        assert "FakeClient" in str(caught.value) and target_of(gateway) in str(caught.value)
        with pytest.raises(ClientDisabledError):
            await client.chat(user("x"), provider=SIM)
        stream = client.stream(SIM)
        with pytest.raises(ClientDisabledError):
            stream.chat(user("x"))
        with pytest.raises(ClientDisabledError):
            await stream.__aenter__()
    assert gateway.probe.started == []


async def test_switched_off_sync_client(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENABLED_ENV, "false")

    def run() -> None:
        with Client(target_of(gateway)) as client, pytest.raises(ClientDisabledError):
            client.embed("x")

    await asyncio.to_thread(run)


async def test_unrecognised_value_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENABLED_ENV, "flase")
    async with AsyncClient("127.0.0.1:1") as client:
        with pytest.raises(ClientDisabledError, match="not understood"):
            await client.check_connection()


async def test_switched_on_explicitly(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENABLED_ENV, "true")
    await client.check_connection()


async def test_fakes_ignore_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENABLED_ENV, "false")
    assert (await AsyncFakeClient().chat(user("fake is fine"))).text == "fake is fine"

    def run() -> str:
        with FakeClient() as fake:
            return fake.chat(user("sync too")).text

    assert await asyncio.to_thread(run) == "sync too"
