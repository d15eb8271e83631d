"""One usage record per request, through a real gateway on 127.0.0.1, on SQLite and the real PostgreSQL: success,
failure, retries (failed and then succeeded), cancellation, unary RPCs; content only with log_content; never a
credential."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from auth import ApiKeyStore, Authenticator
from integration_api.errors import Unavailable
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from integration_api.server import GatewayServer
from integration_api.settings import Settings
from integration_api.usage import UsageRecord
from providers.base import ALL_RPCS, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.registry import default_registry
from providers.simulated import SimulatedProvider
from providers.types import ChatCall, ChatEvent
from tests.conftest import make_settings
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request, credential
from tests.usage.conftest import read_records

SECRET = "sk-usage-test-secret-0123456789"  # the vendor key every request carries: never in a record


class FlakyProvider(Provider):
    """Fails each request's first attempt (503 before any output), then serves it like the simulated provider."""

    name = "flaky"

    def __init__(self, credential: CredentialValue, attempts: dict[str, int]) -> None:
        self._inner = SimulatedProvider(credential)
        self.attempts = attempts  # per gateway: request id -> attempts so far

    async def stream_chat(self, call: ChatCall) -> AsyncIterator[ChatEvent]:  # type: ignore[override]
        seen = self.attempts[call.request_id] = self.attempts.get(call.request_id, 0) + 1
        if seen == 1:
            raise Unavailable("flaky: first attempt fails", upstream_status=503)
        async for event in self._inner.stream_chat(call):
            yield event


class Gateway:
    def __init__(self, server: GatewayServer, channel: grpc.aio.Channel, api_key: str, key_id: str) -> None:
        self.server, self.channel, self.api_key, self.key_id = server, channel, api_key, key_id
        self.metadata = (("x-api-key", api_key),)
        self.stub = pb_grpc.UnifiedProviderServiceStub(channel)

    def open_stream(self) -> StreamDriver:
        return StreamDriver(self.stub.StreamChat(metadata=self.metadata))

    async def records(self) -> list[UsageRecord]:
        """Every record so far: what the server still holds is written first."""
        await self.server.gateway.state.usage.flush()
        return await read_records(self.server.settings)


async def start(settings: Settings) -> Gateway:
    registry = default_registry()
    attempts: dict[str, int] = {}

    def flaky(credential: CredentialValue, env: ProviderEnv) -> Provider:
        return FlakyProvider(credential, attempts)

    registry.register(ProviderSpec("flaky", flaky, ALL_RPCS))
    keys = ApiKeyStore(settings.data_dir)
    server = GatewayServer(settings, registry=registry, authenticator=Authenticator(settings, store=keys))
    port = await server.start()
    api_key, record = keys.create(name="usage", organization_id="acme", project_id="chat")
    return Gateway(server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), api_key, record.key_id)


@pytest.fixture
async def gateway(usage_settings: Settings) -> AsyncIterator[Gateway]:
    running = await start(usage_settings)
    yield running
    await running.channel.close()
    await running.server.stop()


def request(request_id: str, text: str = "hello there world", **params: Any) -> pb.ChatRequest:
    return chat_request(request_id, text, provider="simulated", cred=credential(key=SECRET), **params)


def by_id(records: list[UsageRecord]) -> dict[str, UsageRecord]:
    return {r.request_id: r for r in records}


async def test_a_successful_request(gateway: Gateway) -> None:
    stream = gateway.open_stream()
    await stream.send(request("ok", name="sim-1"))
    final = (await stream.read_until_done(["ok"])).terminal("ok")
    assert final.success
    [record] = await gateway.records()
    assert record.request_id == "ok" and record.stream_id and record.rpc == "StreamChat"
    assert (record.organization_id, record.project_id, record.key_id) == ("acme", "chat", gateway.key_id)
    assert record.auth_method == "api_key" and record.user_id is None
    assert (record.provider, record.model, record.status, record.code) == ("simulated", "sim-1", "OK", 200)
    assert (record.input_tokens, record.output_tokens) == (final.usage.inputTokens, final.usage.outputTokens) == (3, 3)
    assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.total_ms
    assert record.retries == 0
    assert record.cost == pytest.approx(3 * 1.00e-6 + 3 * 2.00e-6)  # the shipped price table: simulated $1/$2 per M
    assert record.prompt is None and record.reply is None  # no content without log_content


async def test_failures_retries_and_cancellation(gateway: Gateway) -> None:
    stream = gateway.open_stream()
    slow = request("cancel-me", " ".join(["w"] * 200), simulated_delay_ms=20)
    await stream.send(
        request("bad", simulated_error=400),
        request("down", simulated_error=503),  # retried until the attempts run out
        chat_request("flaky", "one two", provider="flaky", cred=credential(key=SECRET)),  # retried once, then fine
        slow,
    )
    while not stream.collected.frames["cancel-me"]:  # it is streaming: its first delta arrived
        stream.collected.add(await stream.call.read())
    await stream.send(cancel_request("cancel-me"))
    collected = await stream.read_until_done(["bad", "down", "flaky", "cancel-me"])
    assert collected.terminal("cancel-me").error.status == "CANCELLED"
    records = by_id(await gateway.records())
    assert set(records) == {"bad", "down", "flaky", "cancel-me"}
    attempts = gateway.server.settings.retry_max_attempts

    bad, down, flaky, cancelled = records["bad"], records["down"], records["flaky"], records["cancel-me"]
    assert (bad.status, bad.code, bad.retries, bad.ttft_ms, bad.output_tokens) == ("INVALID_ARGUMENT", 400, 0, None, 0)
    assert (down.status, down.code, down.retries) == ("UNAVAILABLE", 503, attempts - 1)
    assert (flaky.status, flaky.provider, flaky.retries, flaky.output_tokens) == ("OK", "flaky", 1, 2)
    assert (cancelled.status, cancelled.code, cancelled.output_tokens) == ("CANCELLED", 499, 0)
    assert cancelled.ttft_ms is not None  # it had streamed before it was cancelled


async def test_dropping_the_stream_records_its_requests_as_cancelled(gateway: Gateway) -> None:
    stream = gateway.open_stream()
    await stream.send(request("gone", " ".join(["w"] * 500), simulated_delay_ms=10))
    await stream.call.read()
    stream.call.cancel()
    state = gateway.server.gateway.state
    await state.usage.flush()
    while not await state.usage.store.count():  # the run ends when the server sees the stream go
        await state.usage.flush()
    [record] = await gateway.records()
    assert (record.request_id, record.status) == ("gone", "CANCELLED")


async def test_unary_rpcs(gateway: Gateway) -> None:
    md = gateway.metadata
    chat = await gateway.stub.Chat(request("unary", "four words right here"), metadata=md)
    assert chat.success
    embedded = await gateway.stub.Embedding(
        pb.EmbeddingRequest(providerName="simulated", content={0: "a b", 1: "c"}), metadata=md
    )
    assert embedded.success
    await gateway.stub.VerifyCredential(
        pb.VerifyCredentialRequest(providerName="simulated", credential=credential(key="invalid")), metadata=md
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.stub.Chat(request("unary-bad", simulated_error=429), metadata=md)
    records = await gateway.records()
    assert [(r.rpc, r.status, r.input_tokens) for r in records] == [
        ("Chat", "OK", 4),
        ("Embedding", "OK", 3),
        ("VerifyCredential", "UNAUTHENTICATED", 0),
        ("Chat", "RESOURCE_EXHAUSTED", 0),
    ]
    assert records[0].request_id == "unary" and records[1].ttft_ms is None


async def test_content_is_recorded_only_with_log_content(tmp_path: Path, database_url: str | None) -> None:
    for log_content in (False, True):
        settings = make_settings(tmp_path / str(log_content), database_url=database_url, log_content=log_content)
        gateway = await start(settings)
        try:
            stream = gateway.open_stream()
            history = [
                pb.Message(role="user", user=pb.UserMessage(content="an earlier question")),
                pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=["an earlier answer"])),
                pb.Message(role="user", user=pb.UserMessage(content="the last question")),
            ]
            rid = f"content-{log_content}"  # PostgreSQL: both runs share the test's database
            await stream.send(chat_request(rid, provider="simulated", cred=credential(key=SECRET), messages=history))
            await stream.read_until_done([rid])
            record = by_id(await gateway.records())[rid]
        finally:
            await gateway.channel.close()
            await gateway.server.stop()
        if log_content:
            assert (record.prompt, record.reply) == ("the last question", "the last question")
        else:
            assert (record.prompt, record.reply) == (None, None)
        assert not [value for value in vars_of(record) if isinstance(value, str) and SECRET in value]
        assert gateway.api_key not in repr(record)
        if database_url is None:
            assert not files_holding(settings.data_dir, SECRET)


def files_holding(directory: Path, secret: str) -> list[Path]:
    return [path for path in directory.glob("usage.sqlite3*") if secret.encode() in path.read_bytes()]


def vars_of(record: UsageRecord) -> list[object]:
    return [getattr(record, name) for name in record.__dataclass_fields__]
