"""The request pipeline: a layer added in one line sees every request of every RPC, with the request's context."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from integration_api.context import RequestContext, TraceContext
from integration_api.errors import PermissionDenied
from integration_api.pipeline import Pipeline, build_pipeline
from integration_api.policy import PolicyLayer
from integration_api.proto import integration_api_pb2 as pb
from integration_api.sessions.stats import StatsLayer
from integration_api.usage.layer import UsageLayer
from providers.base import ChatOutcome, ChatStream, ObservingLayer, Provider, ProviderLayer
from providers.resilience import ResilientProvider
from providers.types import ChatCall, EmbeddingCall, EmbeddingResult, RerankCall, RerankResult, UserMessage
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import chat_request, credential

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Seen:
    contexts: list[RequestContext] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)  # (request id or rpc, event type)


class RecordingLayer(ProviderLayer):
    """Records what passes through it; refuses requests whose model is "forbidden" (a policy-like layer)."""

    def __init__(self, inner: Provider, context: RequestContext, seen: Seen) -> None:
        super().__init__(inner, context)
        seen.contexts.append(context)
        self.seen = seen

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        if self.context.model == "forbidden":
            raise PermissionDenied("this layer refuses the model 'forbidden'")
        async for event in self.inner.stream_chat(call):
            self.seen.events.append((call.request_id, type(event).__name__))
            yield event

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        self.seen.events.append(("Embedding", "called"))
        return await self.inner.embed(call)

    async def rerank(self, call: RerankCall) -> RerankResult:
        self.seen.events.append(("Reranking", "called"))
        return await self.inner.rerank(call)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def layered(tmp_path: Path, seen: Seen) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(
        make_settings(tmp_path),
        layers=[lambda inner, context: RecordingLayer(inner, context, seen)],  # the one line that adds a layer
    )
    yield running
    await running.channel.close()
    await running.server.stop()


async def test_a_layer_sees_every_rpc_with_its_context(layered: RunningGateway, seen: Seen) -> None:
    metadata = (*layered.metadata, ("traceparent", TRACEPARENT))
    stream = layered.open_stream(metadata)
    await stream.send(chat_request("s1", "one two", provider="simulated", name="echo"))
    await stream.send(chat_request("s2", "three", provider="probe"))
    collected = await stream.read_until_done(["s1", "s2"])
    assert collected.text("s1") == "one two" and collected.terminal("s2").success

    unary = await layered.unified.Chat(chat_request("u1", "four five", provider="simulated"), metadata=metadata)
    assert "".join(unary.data.assistant.contents) == "four five"
    embedding = await layered.unified.Embedding(
        pb.EmbeddingRequest(providerName="simulated", credential=credential(key="k"), content={0: "a"}),
        metadata=metadata,
    )
    assert len(embedding.data) == 1
    reranking = await layered.unified.Reranking(
        pb.RerankingRequest(providerName="simulated", credential=credential(key="k"), query="a", content={0: "a b"}),
        metadata=metadata,
    )
    assert len(reranking.data) == 1

    assert [(c.rpc, c.request_id, c.provider) for c in seen.contexts] == [
        ("StreamChat", "s1", "simulated"),
        ("StreamChat", "s2", "probe"),
        ("Chat", "u1", "simulated"),
        ("Embedding", "", "simulated"),
        ("Reranking", "", "simulated"),
    ]
    assert seen.contexts[0].model == "echo"
    for context in seen.contexts:
        assert context.principal.project_id == "proj-1" and context.principal.method == "api_key"
        assert context.trace == TraceContext.parse(TRACEPARENT) and context.trace is not None
        assert context.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and context.trace.sampled
    stream_ids = {c.stream_id for c in seen.contexts}
    assert seen.contexts[0].stream_id == seen.contexts[1].stream_id and len(stream_ids) == 4
    assert ("s1", "ChatFinished") in seen.events and ("u1", "TextDelta") in seen.events
    assert ("Embedding", "called") in seen.events and ("Reranking", "called") in seen.events


async def test_a_layer_refusal_is_that_requests_error_only(layered: RunningGateway) -> None:
    stream = layered.open_stream()
    await stream.send(
        chat_request("no", provider="simulated", name="forbidden"), chat_request("yes", "fine", provider="simulated")
    )
    collected = await stream.read_until_done(["no", "yes"])
    refused = collected.terminal("no")
    assert not refused.success and refused.error.status == "PERMISSION_DENIED" and refused.code == 403
    assert collected.terminal("yes").success and collected.text("yes") == "fine"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await layered.unified.Chat(chat_request("u", provider="simulated", name="forbidden"), metadata=layered.metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_context_carries_the_grpc_deadline(layered: RunningGateway, seen: Seen) -> None:
    await layered.unified.Chat(chat_request("d", provider="simulated"), metadata=layered.metadata, timeout=30)
    remaining = seen.contexts[-1].time_remaining()
    assert remaining is not None and 0 < remaining <= 31  # grpc rounds the deadline it passes on


def test_layers_wrap_outermost_first(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    order: list[str] = []

    def named(label: str) -> object:
        def layer(inner: Provider, context: RequestContext) -> Provider:
            order.append(label)
            wrapped = ProviderLayer(inner, context)
            wrapped.name = f"{label}({inner.name})"
            return wrapped

        return layer

    pipeline = build_pipeline(settings, [named("outer"), named("inner")])  # type: ignore[list-item]
    assert isinstance(pipeline, Pipeline)
    adapter = Provider()
    adapter.name = "adapter"
    context = _context()
    wrapped = pipeline.wrap(adapter, context)
    assert wrapped.name == "outer(inner(adapter))"
    assert order == ["inner", "outer"]  # built innermost first, so the first listed sees each call first
    usage = wrapped.inner.inner  # type: ignore[attr-defined]
    assert isinstance(usage, UsageLayer)  # the default layers, outermost first
    stats = usage.inner  # outside policy: refused requests are counted too
    assert isinstance(stats, StatsLayer)
    policy = stats.inner
    assert isinstance(policy, PolicyLayer)
    resilient = policy.inner  # no session layer in between: the request names no session
    assert isinstance(resilient, ResilientProvider) and resilient.inner is adapter


def _context() -> RequestContext:
    from auth.principal import Principal
    from integration_api.context import StreamContext

    return RequestContext(StreamContext(Principal.anonymous()), "StreamChat", "simulated", "r")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    ],
)
def test_malformed_traceparent_is_ignored(header: str | None) -> None:
    assert TraceContext.parse(header) is None


async def test_the_context_counts_upstream_attempts(layered: RunningGateway, seen: Seen) -> None:
    stream = layered.open_stream()
    await stream.send(
        chat_request("ok", provider="simulated"), chat_request("down", provider="simulated", simulated_error=503)
    )
    collected = await stream.read_until_done(["ok", "down"])
    assert collected.terminal("down").error.status == "UNAVAILABLE"
    attempts = {context.request_id: context.stats.attempts for context in seen.contexts}
    assert attempts == {"ok": 1, "down": 3}  # make_settings leaves retry_max_attempts at 3


class Watch(ObservingLayer):
    """Records what it is told; refuses when asked to."""

    def __init__(self, inner: Provider, context: RequestContext, log: list[str], refuse: bool = False) -> None:
        super().__init__(inner, context)
        self.log, self.refuse, self.label = log, refuse, f"w{len(log)}"

    async def opened(self, call: ChatCall) -> None:
        self.log.append(f"opened {self.label}")
        if self.refuse:
            raise PermissionDenied("refused by an observer")

    def closed(self, call: ChatCall, outcome: ChatOutcome) -> None:
        state = "finished" if outcome.finished else type(outcome.error).__name__
        self.log.append(f"closed {self.label} {state} chunks={outcome.chunks} usage={outcome.usage is not None}")


async def test_observing_layers_share_one_pass_and_see_refusals_inside_them(tmp_path: Path) -> None:
    from providers.simulated import SimulatedProvider

    call = ChatCall("r", (UserMessage("one two three"),))
    log: list[str] = []
    inner = Watch(SimulatedProvider({}), _context(), log)
    outer = Watch(inner, _context(), log)
    inner.label, outer.label = "inner", "outer"
    inner.stream_chat = None  # type: ignore[assignment]  # never called: the outer one runs the whole chain
    events = [event async for event in outer.stream_chat(call)]
    assert len(events) == 4
    assert log == [
        "opened outer",
        "opened inner",
        "closed inner finished chunks=3 usage=True",
        "closed outer finished chunks=3 usage=True",
    ]

    log.clear()
    refusing = Watch(SimulatedProvider({}), _context(), log, refuse=True)
    watching = Watch(refusing, _context(), log)
    refusing.label, watching.label = "refusing", "watching"
    with pytest.raises(PermissionDenied):
        [event async for event in watching.stream_chat(call)]
    assert log == ["opened watching", "opened refusing", "closed watching PermissionDenied chunks=0 usage=False"]

    log.clear()
    early = Watch(SimulatedProvider({}), _context(), log)
    early.label = "early"
    stream = early.stream_chat(call)
    await anext(stream)
    await stream.aclose()  # the consumer stops reading: the observer sees it
    assert log == ["opened early", "closed early GeneratorExit chunks=1 usage=False"]


def test_a_context_for_another_provider_keeps_every_other_field() -> None:
    context = _context()
    routed = context.for_provider("openai", "gpt-4o-mini")
    assert (routed.provider, routed.model) == ("openai", "gpt-4o-mini")
    for name in (f.name for f in dataclasses.fields(RequestContext)):
        if name not in ("provider", "model"):
            assert getattr(routed, name) is getattr(context, name), name  # a new field must be passed on too
