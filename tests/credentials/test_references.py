"""Requests that reference a stored credential, through a real gateway, against the OpenAI emulator.

The stored value (key and base URL) reaches the emulator exactly as if the request had carried it; the key's scope,
the stored provider and the reference's shape are checked before any upstream call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from auth.principal import KeyScope, Principal
from integration_api.context import RequestContext, StreamContext
from integration_api.credentials import CredentialCipher, CredentialStore, StoredCredentials, generate_key
from integration_api.errors import NotFound
from integration_api.proto import integration_api_pb2 as pb
from integration_api.testing.emulators import Emulator, Script, emulator_for
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.fake_clock import FakeClock
from tests.grpc_helpers import chat_request, credential

SECRET = "sk-REFCANARY-0123456789"
KEY = generate_key()


def reference(name: str) -> pb.Credential:
    struct = struct_pb2.Struct()
    struct.update({"credential_ref": name})
    return pb.Credential(value=struct)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with emulator_for("openai") as running:
        yield running


@pytest.fixture
async def gateway(tmp_path: Path, emulator: Emulator) -> AsyncIterator[RunningGateway]:
    store = CredentialStore(tmp_path, CredentialCipher([KEY]))
    store.add("team-openai", "openai", {"key": SECRET, "base_url": emulator.base_url})
    store.add("team-anthropic", "anthropic", {"key": "sk-ant-other"})
    store.add("other-openai", "openai", {"key": "sk-other", "base_url": emulator.base_url})
    running = await start_gateway(make_settings(tmp_path, credentials_key=KEY))
    yield running
    await running.channel.close()
    await running.server.stop()


async def stream_one(
    gateway: RunningGateway,
    cred: pb.Credential,
    metadata: tuple[tuple[str, str], ...] | None = None,
    provider: str = "openai",
) -> pb.ChatResponse:
    stream = gateway.open_stream(metadata)
    request = chat_request("r1", "hi", provider=provider, cred=cred, name="gpt-4o-mini")
    await stream.send(request)
    collected = await stream.read_until_done(["r1"], timeout=20)
    await stream.call.done_writing()
    return collected.terminal("r1")


async def test_by_name_on_a_stream(gateway: RunningGateway, emulator: Emulator) -> None:
    emulator.enqueue(Script(text="stored key works"))
    frame = await stream_one(gateway, reference("team-openai"))
    assert frame.success, frame.error
    assert "".join(frame.data.assistant.contents) == "stored key works"
    assert emulator.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


async def test_by_numeric_id_in_unary_chat(gateway: RunningGateway, emulator: Emulator) -> None:
    emulator.enqueue(Script(text="by id"))
    stored_id = next(
        r.id
        for r in CredentialStore(gateway.server.settings.data_dir, CredentialCipher([KEY])).list()
        if r.name == "team-openai"
    )
    request = chat_request("r2", "hi", provider="openai", cred=pb.Credential(id=stored_id), name="gpt-4o-mini")
    answer = await gateway.unified.Chat(request, metadata=gateway.metadata)
    assert answer.success and "".join(answer.data.assistant.contents) == "by id"
    assert emulator.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


async def test_an_id_next_to_a_value_is_not_a_reference(gateway: RunningGateway, emulator: Emulator) -> None:
    emulator.enqueue(Script(text="own key"))
    frame = await stream_one(gateway, credential(key="sk-own", base_url=emulator.base_url))  # id=1 and a value
    assert frame.success, frame.error
    assert emulator.requests[-1].headers["Authorization"] == "Bearer sk-own"


async def test_the_key_scope_decides(gateway: RunningGateway, emulator: Emulator) -> None:
    scoped, _ = gateway.store.create("scoped", "org-1", "proj-1", scope=KeyScope(credentials=("team-*",)))
    metadata = (("x-api-key", scoped),)
    emulator.enqueue(Script(text="allowed"))
    assert (await stream_one(gateway, reference("team-openai"), metadata)).success
    denied = await stream_one(gateway, reference("other-openai"), metadata)
    assert denied.error.status == "PERMISSION_DENIED" and "'other-openai'" in denied.error.errorMessage
    # Denied by name before the store is read: an unknown name outside the scope is denied, not NOT_FOUND.
    unknown = await stream_one(gateway, reference("nothing-here"), metadata)
    assert unknown.error.status == "PERMISSION_DENIED"
    assert len(emulator.requests) == 1


@pytest.mark.parametrize(
    ("cred", "status", "named"),
    [
        (reference("no-such"), "NOT_FOUND", "'no-such'"),
        (reference("team-anthropic"), "FAILED_PRECONDITION", "'anthropic'"),
        (pb.Credential(id=999), "NOT_FOUND", "999"),
    ],
    ids=["unknown-name", "other-provider", "unknown-id"],
)
async def test_refusals(
    gateway: RunningGateway, emulator: Emulator, cred: pb.Credential, status: str, named: str
) -> None:
    frame = await stream_one(gateway, cred)
    assert not frame.success and frame.error.status == status and named in frame.error.errorMessage
    assert emulator.requests == []


async def test_a_reference_carries_nothing_else(gateway: RunningGateway) -> None:
    struct = struct_pb2.Struct()
    struct.update({"credential_ref": "team-openai", "base_url": "http://127.0.0.1:1/v1"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Chat(
            chat_request("r3", provider="openai", cred=pb.Credential(value=struct)), metadata=gateway.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "base_url" in (caught.value.details() or "")


async def test_a_server_without_stored_credentials(tmp_path: Path) -> None:
    running = await start_gateway(make_settings(tmp_path))
    try:
        refused = await stream_one(running, reference("team-openai"))
        assert refused.error.status == "FAILED_PRECONDITION"
        assert "INTEGRATION_API_CREDENTIALS_KEY" in refused.error.errorMessage
        # A bare Credential.id keeps its old meaning there (none): the simulated provider answers as before.
        answer = await stream_one(running, pb.Credential(id=7), provider="simulated")
        assert answer.success
    finally:
        await running.channel.close()
        await running.server.stop()


def test_values_are_cached_for_the_ttl(tmp_path: Path) -> None:
    cipher = CredentialCipher([KEY])
    store = CredentialStore(tmp_path, cipher)
    store.add("c", "openai", {"key": SECRET})
    clock = FakeClock()
    resolver = StoredCredentials(tmp_path, cipher, cache_ttl_s=30.0, clock=clock)
    context = RequestContext(StreamContext(Principal("o", "p")), "Chat", "openai")
    assert resolver.resolve(context, {"credential_ref": "c"}) == {"key": SECRET}
    store.remove("c")  # by another process: served from the cache until it expires
    clock.now += 29.0
    assert resolver.resolve(context, {"credential_ref": "c"}) == {"key": SECRET}
    clock.now += 2.0
    with pytest.raises(NotFound):
        resolver.resolve(context, {"credential_ref": "c"})
