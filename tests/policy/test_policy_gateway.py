"""Scopes, rate limits and budgets through a real gateway: error frames on one stream that stays usable, unary
statuses with RetryInfo, JWT principals under their project's row. Time is the policy's injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from auth import issue_service_token
from auth.principal import KeyScope
from auth.projects import Budget, ProjectRecord, ProjectStore
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from integration_api.settings import Settings
from tests.conftest import JWT_SECRET, RunningGateway, start_gateway
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request, metrics, packed_value

NOON = datetime(2027, 3, 10, 12, 0, tzinfo=UTC).timestamp()
TEXT = "one two three four"  # 18 characters: 5 tokens estimated; the simulator reports 4 in and 4 out


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(settings)
    yield running
    await running.channel.close()
    await running.server.stop()


@pytest.fixture
def clock(gateway: RunningGateway) -> Clock:
    clock = Clock()
    gateway.server.gateway.state.policy.clock = clock
    return clock


def key_stream(gateway: RunningGateway, scope: KeyScope, project: str = "proj-1") -> StreamDriver:
    key, _ = gateway.store.create("scoped", "org-1", project, scope=scope)
    return gateway.open_stream((("x-api-key", key),))


def set_project(gateway: RunningGateway, record: ProjectRecord) -> None:
    ProjectStore(gateway.server.settings.data_dir).set(record)
    gateway.server.gateway.state.policy.projects.invalidate()


async def run(stream: StreamDriver, request: pb.ChatRequest) -> pb.ChatResponse:
    await stream.send(request)
    return (await stream.read_until_done([request.requestId])).terminal(request.requestId)


async def test_scope_denials_name_the_scope_and_the_stream_goes_on(gateway: RunningGateway, clock: Clock) -> None:
    stream = key_stream(gateway, KeyScope(providers=("openai", "anthropic")))
    denied = await run(stream, chat_request("p", TEXT, provider="simulated"))
    assert not denied.success and denied.error.status == "PERMISSION_DENIED" and denied.code == 403
    assert "this key may use providers openai, anthropic; not simulated" in denied.error.errorMessage
    again = await run(stream, chat_request("p2", TEXT, provider="simulated"))  # the same stream still answers
    assert again.error.status == "PERMISSION_DENIED"

    models = key_stream(gateway, KeyScope(providers=("sim*",), models=("gpt-4o*",)))
    wrong_model = await run(models, chat_request("m", TEXT, provider="simulated", name="sim-large"))
    assert "this key may use models gpt-4o*; not sim-large" in wrong_model.error.errorMessage
    no_model = await run(models, chat_request("m2", TEXT, provider="simulated"))
    assert "names no model" in no_model.error.errorMessage
    allowed = await run(models, chat_request("m3", TEXT, provider="simulated", name="gpt-4o-mini"))
    assert allowed.success

    expired = key_stream(gateway, KeyScope(expires_at=datetime(2027, 3, 10, 11, tzinfo=UTC)))
    late = await run(expired, chat_request("e", TEXT, provider="simulated"))
    assert late.error.status == "PERMISSION_DENIED" and "expired at 2027-03-10T11:00:00" in late.error.errorMessage
    for driver in (stream, models, expired):
        await driver.call.done_writing()
        await driver.read_to_end()
        assert await driver.call.code() == grpc.StatusCode.OK


async def test_a_service_token_gets_its_projects_scope(gateway: RunningGateway, clock: Clock) -> None:
    set_project(gateway, ProjectRecord("org-1", "proj-jwt", KeyScope(providers=("openai",))))
    token = issue_service_token(JWT_SECRET, organization_id="org-1", project_id="proj-jwt")
    stream = gateway.open_stream((("x-internal-service-key", token),))
    denied = await run(stream, chat_request("j", TEXT, provider="simulated"))
    assert "project org-1/proj-jwt may use providers openai; not simulated" in denied.error.errorMessage
    other = issue_service_token(JWT_SECRET, organization_id="org-1", project_id="elsewhere")
    free = gateway.open_stream((("x-internal-service-key", other),))
    assert (await run(free, chat_request("f", TEXT, provider="simulated"))).success  # no row: unrestricted


async def _create_session(gateway: RunningGateway, key: str, provider: str, model: str = "") -> str:
    parameters = {"model.name": packed_value(model)} if model else {}
    request = pb.CreateSessionRequest(providerName=provider, modelParameters=parameters)
    sessions = pb_grpc.SessionServiceStub(gateway.channel)
    return str((await sessions.CreateSession(request, metadata=(("x-api-key", key),))).session.sessionId)


async def test_a_session_turn_is_judged_with_the_sessions_model(gateway: RunningGateway, clock: Clock) -> None:
    # The policy sees what the provider is sent: the model a session holds counts for a key scoped to models,
    # though the turn itself names none.
    scoped, _ = gateway.store.create("scoped", "org-1", "proj-1", scope=KeyScope(models=("gpt-4o*",)))
    unscoped, _ = gateway.store.create("open", "org-1", "proj-1")  # the project's sessions are every key's
    allowed = await _create_session(gateway, scoped, "simulated", "gpt-4o-mini")
    forbidden = await _create_session(gateway, unscoped, "simulated", "sim-large")
    stream = gateway.open_stream((("x-api-key", scoped),))
    on_allowed = chat_request("a", TEXT, provider="simulated")
    on_allowed.sessionId = allowed
    assert (await run(stream, on_allowed)).success
    on_forbidden = chat_request("f", TEXT, provider="simulated")
    on_forbidden.sessionId = forbidden
    refused = await run(stream, on_forbidden)
    assert refused.error.status == "PERMISSION_DENIED"
    assert "this key may use models gpt-4o*; not sim-large" in refused.error.errorMessage


async def test_create_session_refuses_what_the_scope_forbids(gateway: RunningGateway, clock: Clock) -> None:
    set_project(gateway, ProjectRecord("org-1", "proj-2", KeyScope(providers=("sim*", "openai"))))
    providers, _ = gateway.store.create("providers", "org-1", "proj-1", scope=KeyScope(providers=("openai",)))
    with pytest.raises(grpc.aio.AioRpcError) as provider_refused:
        await _create_session(gateway, providers, "simulated")
    assert provider_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "this key may use providers openai; not simulated" in str(provider_refused.value.details())

    models, _ = gateway.store.create("models", "org-1", "proj-2", scope=KeyScope(models=("gpt-4o*",)))
    with pytest.raises(grpc.aio.AioRpcError) as model_refused:
        await _create_session(gateway, models, "simulated", "sim-large")
    assert model_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "this key may use models gpt-4o*; not sim-large" in str(model_refused.value.details())
    assert await _create_session(gateway, models, "simulated")  # no model yet: each turn may name an allowed one

    anthropic, _ = gateway.store.create("anthropic", "org-1", "proj-2")
    with pytest.raises(grpc.aio.AioRpcError) as project_refused:
        await _create_session(gateway, anthropic, "anthropic")  # the key may; its project's row may not
    assert project_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "project org-1/proj-2 may use providers sim*, openai; not anthropic" in str(project_refused.value.details())


async def test_requests_per_minute_on_one_stream(gateway: RunningGateway, clock: Clock) -> None:
    stream = key_stream(gateway, KeyScope(rpm=5))
    requests = [chat_request(f"r{n}", TEXT, provider="simulated") for n in range(8)]
    await stream.send(*requests)
    collected = await stream.read_until_done([r.requestId for r in requests])
    terminals = [collected.terminal(r.requestId) for r in requests]
    admitted = [t for t in terminals if t.success]
    refused = [t for t in terminals if not t.success]
    assert len(admitted) == 5 and len(refused) == 3
    for frame in refused:
        assert frame.error.status == "RESOURCE_EXHAUSTED" and frame.code == 429 and frame.error.retryable
        assert 0 < frame.error.retryAfterMs <= 12_000  # 60 s / 5: the next request's slot
        assert "requests per minute (5)" in frame.error.errorMessage
    assert (await run(stream, chat_request("too-soon", TEXT, provider="simulated"))).error.retryAfterMs > 0
    clock.now += 12.0
    assert (await run(stream, chat_request("later", TEXT, provider="simulated"))).success  # the same stream


async def test_tokens_per_minute_reserve_then_settle(gateway: RunningGateway, clock: Clock) -> None:
    # Each request reserves 5 + 15 (max_tokens) = 20 tokens and is settled at 8 (4 in + 4 out): with 100 per
    # minute, the 12th finds 11 * 8 + 20 > 100. Reservations alone would stop at 5; real usage alone at 12.
    stream = key_stream(gateway, KeyScope(tpm=100))
    outcomes = []
    for n in range(13):
        final = await run(stream, chat_request(f"t{n}", TEXT, provider="simulated", max_tokens=15))
        outcomes.append(final.success)
        if final.success:
            assert metrics(final)["TOTAL_TOKEN"] == "8"
    assert outcomes == [True] * 11 + [False] * 2
    refused = await run(stream, chat_request("t-more", TEXT, provider="simulated", max_tokens=15))
    assert refused.error.status == "RESOURCE_EXHAUSTED" and "tokens per minute (100)" in refused.error.errorMessage
    assert refused.error.retryAfterMs > 0
    clock.now += 60.0
    assert (await run(stream, chat_request("t-later", TEXT, provider="simulated", max_tokens=15))).success


async def test_concurrent_requests(gateway: RunningGateway, clock: Clock) -> None:
    stream = key_stream(gateway, KeyScope(max_concurrent=2))
    long_text = " ".join(f"w{n}" for n in range(200))
    slow = [chat_request(f"slow{n}", long_text, provider="simulated", simulated_delay_ms=20) for n in range(2)]
    await stream.send(*slow)
    # Both are running once each has streamed a delta.
    while not all(stream.collected.frames[r.requestId] for r in slow):
        stream.collected.add(await stream.call.read())
    extra = [chat_request(f"extra{n}", TEXT, provider="simulated") for n in range(2)]
    await stream.send(*extra)
    collected = await stream.read_until_done([r.requestId for r in extra])
    for request in extra:
        frame = collected.terminal(request.requestId)
        assert frame.error.status == "RESOURCE_EXHAUSTED" and frame.error.retryAfterMs == 1000
        assert "concurrent requests (2)" in frame.error.errorMessage
    await stream.send(*(cancel_request(r.requestId) for r in slow))
    collected = await stream.read_until_done([r.requestId for r in slow])
    assert all(not collected.terminal(r.requestId).success for r in slow)
    assert (await run(stream, chat_request("after", TEXT, provider="simulated"))).success  # the slots came back


async def test_unary_chat_gets_resource_exhausted_with_retry_info(gateway: RunningGateway, clock: Clock) -> None:
    key, _ = gateway.store.create("unary", "org-1", "proj-1", scope=KeyScope(rpm=1))
    metadata = (("x-api-key", key),)
    assert (await gateway.unified.Chat(chat_request("u1", TEXT, provider="simulated"), metadata=metadata)).success
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Chat(chat_request("u2", TEXT, provider="simulated"), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details)
    assert 59_000_000_000 <= retry.retry_delay.ToNanoseconds() <= 60_000_000_000


async def test_embeddings_are_scoped_too(gateway: RunningGateway, clock: Clock) -> None:
    key, _ = gateway.store.create("emb", "org-1", "proj-1", scope=KeyScope(providers=("openai",)))
    request = pb.EmbeddingRequest(providerName="simulated", content={0: "hello"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Embedding(request, metadata=(("x-api-key", key),))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not simulated" in (caught.value.details() or "")


async def test_a_daily_token_budget(gateway: RunningGateway, clock: Clock) -> None:
    set_project(gateway, ProjectRecord("org-1", "proj-b", budgets=(Budget("day", "tokens", 30),)))
    token = issue_service_token(JWT_SECRET, organization_id="org-1", project_id="proj-b")
    stream = gateway.open_stream((("x-internal-service-key", token),))
    # Admitted while less than 30 is spent: 0, 8, 16, 24 spent before each; then 32.
    outcomes = [(await run(stream, chat_request(f"b{n}", TEXT, provider="simulated", max_tokens=15))) for n in range(6)]
    assert [o.success for o in outcomes] == [True, True, True, True, False, False]
    spent = outcomes[4].error
    assert spent.status == "RESOURCE_EXHAUSTED"
    assert "project org-1/proj-b daily token budget (30 tokens per day) is spent" in spent.errorMessage
    assert "resets at 2027-03-11T00:00:00" in spent.errorMessage
    assert spent.retryAfterMs == 12 * 3600 * 1000  # until midnight UTC
    clock.now += 12 * 3600  # the next day
    assert (await run(stream, chat_request("next-day", TEXT, provider="simulated", max_tokens=15))).success


async def test_a_daily_currency_budget(gateway: RunningGateway, clock: Clock) -> None:
    # The simulator's price: $1 / $2 per million tokens in / out. A request reserves 5 in + 15 out ($0.000035)
    # and costs 4 in + 4 out ($0.000012): with $0.00003 a day, 0, 12 and 24 millionths are spent before the first
    # three requests, 36 before the fourth.
    set_project(gateway, ProjectRecord("org-1", "proj-usd", budgets=(Budget("day", "usd", 0.00003),)))
    token = issue_service_token(JWT_SECRET, organization_id="org-1", project_id="proj-usd")
    stream = gateway.open_stream((("x-internal-service-key", token),))
    outcomes = [(await run(stream, chat_request(f"c{n}", TEXT, provider="simulated", max_tokens=15))) for n in range(5)]
    assert [o.success for o in outcomes] == [True, True, True, False, False]
    assert "daily usd budget ($0.00 per day) is spent" in outcomes[3].error.errorMessage


async def test_key_and_project_limits_both_apply(gateway: RunningGateway, clock: Clock) -> None:
    set_project(gateway, ProjectRecord("org-1", "proj-both", KeyScope(rpm=3)))
    first = key_stream(gateway, KeyScope(rpm=10), project="proj-both")
    second = key_stream(gateway, KeyScope(rpm=10), project="proj-both")
    results = [
        (await run(s, chat_request(f"x{n}", TEXT, provider="simulated"))) for n in range(3) for s in (first, second)
    ]
    assert sum(r.success for r in results) == 3  # the project's 3 per minute, across its two keys
    assert all(
        "project org-1/proj-both requests per minute (3)" in r.error.errorMessage for r in results if not r.success
    )
