"""Every vendor of the vendor table through the real gRPC server, the real SDK and that vendor's wire-format emulator.

One matrix, because every emulator takes the same `Script`: text and tool-call streaming, usage and finish
reason, a tool-result turn, each error class, mid-stream errors, retries before (never after) the first token,
timeouts, cancellation reaching the upstream connection, the base-URL allowlist and credential hygiene.
After every fault the same stream must still serve a healthy request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integration_api.proto import integration_api_pb2 as pb
from integration_api.testing.emulators import Emulator, Fault, RecordedRequest, Script, ToolCallScript, emulator_for
from providers import vendors
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request, credential, packed_value

SECRET_KEY = "sk-test-SECRET-4f9a1c77e2"


def _service_account(emulator: Emulator) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "kid-1",
        "private_key": pem.decode(), "client_email": "gateway@test-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": f"{emulator.origin}/token",
    })  # fmt: skip


# What the matrix needs of a vendor beyond the vendor table (`providers.vendors`): a model name, tool calling.
MODELS = {
    "openai": "gpt-test",
    "azure": "gpt-deployment",
    "anthropic": "claude-test",
    "gemini": "gemini-test",
    "vertexai": "gemini-test",
    "mistral": "mistral-test",
    "cohere": "command-test",
    "replicate": "meta/llama-test",
}
WITHOUT_TOOLS = {"replicate"}
URL_FIELDS = ("base_url", "endpoint")  # the credential fields naming where the adapter connects (allowlisted)


@dataclass(frozen=True)
class Vendor:
    entry: vendors.Vendor

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def model(self) -> str:
        return MODELS.get(self.name, "test-model")

    @property
    def tools(self) -> bool:
        return self.name not in WITHOUT_TOOLS

    @property
    def url_field(self) -> str:
        return next(field for field in URL_FIELDS if field in self.entry.credential_fields)

    def credential(self, emulator: Emulator) -> dict[str, Any]:
        """The vendor's required fields (secrets: SECRET_KEY), and its URL field pointing at the emulator."""
        values = {"project_id": "test-project", "region": "us-central1"}
        cred = {field: values.get(field, SECRET_KEY) for field in self.entry.required}
        if "service_account_key" in cred:
            cred["service_account_key"] = _service_account(emulator)
        return {**cred, self.url_field: emulator.base_url}


VENDORS = [Vendor(entry) for entry in vendors.VENDORS]


@pytest.fixture(params=VENDORS, ids=[vendor.name for vendor in VENDORS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def emulator(vendor: Vendor) -> AsyncIterator[Emulator]:
    emulator = emulator_for(vendor.name)
    await emulator.start()
    yield emulator
    await emulator.stop()


class Harness:
    """A gateway, one stream on it and one vendor's emulator."""

    def __init__(self, gateway: RunningGateway, vendor: Vendor, emulator: Emulator) -> None:
        self.gateway = gateway
        self.vendor = vendor
        self.emulator = emulator
        self.stream: StreamDriver = gateway.open_stream()
        self._credential = vendor.credential(emulator)
        self._count = 0

    def request(self, text: str = "hi", **kwargs: Any) -> pb.ChatRequest:
        self._count += 1
        cred = kwargs.pop("cred", None) or credential(**self._credential)
        return chat_request(f"{self.vendor.name}-{self._count}", text, provider=self.vendor.name, cred=cred,
                            name=self.vendor.model, **kwargs)  # fmt: skip

    async def run(self, script: Script | None = None, **kwargs: Any) -> tuple[str, pb.ChatResponse]:
        """Send one request (answered with `script`); return its streamed text and its terminal frame."""
        if script is not None:
            self.emulator.enqueue(script)
        request = self.request(**kwargs)
        await self.stream.send(request)
        collected = await self.stream.read_until_done([request.requestId], timeout=20)
        return collected.text(request.requestId), collected.terminal(request.requestId)

    async def still_healthy(self) -> None:
        text, final = await self.run(Script(text="still here"))
        assert final.success, final.error
        assert text == "still here"


async def _harness(tmp_path: Path, vendor: Vendor, emulator: Emulator, **settings: Any) -> AsyncIterator[Harness]:
    gateway = await start_gateway(make_settings(tmp_path, **settings))
    try:
        yield Harness(gateway, vendor, emulator)
    finally:
        await gateway.channel.close()
        await gateway.server.stop()


@pytest.fixture
async def harness(tmp_path: Path, vendor: Vendor, emulator: Emulator) -> AsyncIterator[Harness]:
    async for h in _harness(tmp_path, vendor, emulator):
        yield h


async def test_text_usage_and_finish(harness: Harness) -> None:
    text, final = await harness.run(Script(text="one two three four", input_tokens=9))
    assert text == "one two three four"
    assert final.success and final.finishReason == "stop"
    assert "".join(final.data.assistant.contents) == "one two three four"
    assert final.usage.inputTokens == 9 and final.usage.outputTokens > 0
    assert {m.name: m.value for m in final.metrics}["STATUS"] == "SUCCESS"


async def test_length_finish_reason(harness: Harness) -> None:
    if harness.vendor.name == "replicate":
        pytest.skip("Replicate does not report why a prediction stopped")
    _, final = await harness.run(Script(text="cut short", finish_reason="length"))
    assert final.finishReason == "length"


async def test_two_parallel_tool_calls(harness: Harness) -> None:
    if not harness.vendor.tools:
        pytest.skip(f"{harness.vendor.name} has no tool calling")
    calls = [ToolCallScript("get_weather", '{"city": "Paris"}'), ToolCallScript("get_time", '{"tz": "CET"}')]
    _, final = await harness.run(Script(text="", tool_calls=calls), tools=[_weather_tool()])
    assert final.success and final.finishReason == "tool_calls"
    got = {c.index: (c.function.name, orjson.loads(c.function.arguments)) for c in final.data.assistant.toolCalls}
    assert got == {0: ("get_weather", {"city": "Paris"}), 1: ("get_time", {"tz": "CET"})}
    assert all(call.id for call in final.data.assistant.toolCalls)


async def test_tool_result_turn(harness: Harness) -> None:
    if not harness.vendor.tools:
        pytest.skip(f"{harness.vendor.name} has no tool calling")
    call = pb.ToolCall(
        id="call_1", type="function", function=pb.FunctionCall(name="get_weather", arguments='{"city": "Paris"}')
    )
    messages = [
        pb.Message(role="user", user=pb.UserMessage(content="weather in Paris?")),
        pb.Message(role="assistant", assistant=pb.AssistantMessage(toolCalls=[call])),
        pb.Message(
            role="tool",
            tool=pb.ToolMessage(tools=[pb.ToolMessage.Tool(name="get_weather", id="call_1", content="sunny-21C")]),
        ),
    ]
    text, final = await harness.run(Script(text="It is sunny."), messages=messages, tools=[_weather_tool()])
    assert final.success and text == "It is sunny."
    sent = orjson.dumps(harness.emulator.requests[-1].body).decode()
    assert "sunny-21C" in sent and "call_1" in sent


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
     (429, "RESOURCE_EXHAUSTED"), (500, "UNAVAILABLE"), (503, "UNAVAILABLE")],
)  # fmt: skip
async def test_error_classes(harness: Harness, status: int, expected: str) -> None:
    faults = [Script(fault=Fault(status=status, retry_after=1 if status == 429 else None))] * 5
    harness.emulator.enqueue(*faults)
    _, final = await harness.run()
    assert not final.success and final.error.status == expected, final.error
    if status == 429:
        assert final.error.retryAfterMs == 1000
    harness.emulator.clear()
    await harness.still_healthy()


async def test_error_event_mid_stream_keeps_the_deltas(harness: Harness) -> None:
    text, final = await harness.run(Script(text="a b c d", fault=Fault(error_event_after_chunks=2)))
    assert text == "a b "
    assert not final.success and final.error.retryable
    await harness.still_healthy()


async def test_malformed_event_and_reset(harness: Harness) -> None:
    text, final = await harness.run(Script(text="a b c d", fault=Fault(malformed_after_chunks=2)))
    assert text == "a b " and final.error.status == "UNAVAILABLE"
    text, final = await harness.run(Script(text="a b c d", fault=Fault(reset_after_chunks=2)))
    assert text == "a b " and final.error.status == "UNAVAILABLE"
    assert len(_chat_requests(harness.emulator)) == 2  # no retry once output was sent
    await harness.still_healthy()


async def test_retry_before_first_token(harness: Harness) -> None:
    harness.emulator.enqueue(Script(fault=Fault(status=429, retry_after=0.01)), Script(fault=Fault(status=503)))
    text, final = await harness.run(Script(text="third time lucky"))
    assert final.success and text == "third time lucky"
    assert len(_chat_requests(harness.emulator)) == 3


async def test_cancel_closes_the_upstream_connection(harness: Harness) -> None:
    harness.emulator.enqueue(Script(text=" ".join(["w"] * 200), chunk_delay_s=0.05))
    request = harness.request()
    await harness.stream.send(request)
    first = await harness.stream.call.read()
    assert first.requestId == request.requestId and not first.final
    await harness.stream.send(cancel_request(request.requestId))
    collected = await harness.stream.read_until_done([request.requestId])
    assert collected.terminal(request.requestId).error.status == "CANCELLED"
    async with asyncio.timeout(5):
        while not any(r.client_disconnected for r in harness.emulator.requests):
            await asyncio.sleep(0.02)
    await harness.still_healthy()


async def test_base_url_outside_the_allowlist_is_refused(harness: Harness) -> None:
    cred = dict(harness.vendor.credential(harness.emulator))
    cred[harness.vendor.url_field] = "http://169.254.169.254/latest"
    _, final = await harness.run(cred=credential(**cred))
    assert final.error.status == "PERMISSION_DENIED"
    assert not _chat_requests(harness.emulator)


async def test_unsupported_parameter_is_invalid_argument(harness: Harness) -> None:
    _, final = await harness.run(no_such_parameter=1)
    assert final.error.status == "INVALID_ARGUMENT" and "no_such_parameter" in final.error.errorMessage


async def test_the_key_never_reaches_logs_or_errors(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    harness.emulator.enqueue(*[Script(fault=Fault(status=401, message=f"bad key {SECRET_KEY[:6]}..."))] * 3)
    _, final = await harness.run()
    assert final.error.status == "UNAUTHENTICATED"
    assert SECRET_KEY not in final.SerializeToString().decode("utf-8", "replace")
    assert SECRET_KEY not in caplog.text


@pytest.mark.parametrize("where", ["before-first-byte", "mid-stream"])
async def test_timeouts(tmp_path: Path, vendor: Vendor, emulator: Emulator, where: str) -> None:
    fault = Fault(stall_before_s=1.2) if where == "before-first-byte" else Fault(stall_after_chunks=1)
    async for harness in _harness(tmp_path, vendor, emulator, first_token_timeout_s=0.5, idle_timeout_s=0.5,
                                  retry_max_attempts=1):  # fmt: skip
        text, final = await harness.run(Script(text="a b c", fault=fault))
        assert final.error.status == "DEADLINE_EXCEEDED", final.error
        assert text == ("" if where == "before-first-byte" else "a ")
        await harness.still_healthy()


def _weather_tool() -> pb.ToolDefinition:
    parameters = pb.FunctionParameter(
        type="object", required=["city"], properties={"city": pb.FunctionParameterProperty(type="string")}
    )
    function = pb.FunctionDefinition(name="get_weather", description="Weather of a city", parameters=parameters)
    return pb.ToolDefinition(type="function", functionDefinition=function)


def _chat_requests(emulator: Emulator) -> list[RecordedRequest]:
    """Requests that start a completion (not token exchanges, model lists, stream reads or cancels)."""
    return [r for r in emulator.requests if r.method == "POST" and not r.path.endswith(("/token", "/cancel"))]


UNARY_RPCS = ("Embedding", "Reranking", "GetModeration")


async def test_unary_rpcs_where_supported(harness: Harness) -> None:
    name, stub, md = harness.vendor.name, harness.gateway.unified, harness.gateway.metadata
    cred = credential(**harness.vendor.credential(harness.emulator))
    verified = await stub.VerifyCredential(pb.VerifyCredentialRequest(providerName=name, credential=cred), metadata=md)
    assert verified.success, verified.errorMessage
    rpcs = harness.vendor.entry.rpcs
    if "Embedding" in rpcs:
        model = {"model.name": packed_value(harness.vendor.model)}
        embedding = pb.EmbeddingRequest(
            providerName=name, credential=cred, content={0: "alpha", 1: "beta"}, modelParameters=model
        )
        embedded = await stub.Embedding(embedding, metadata=md)
        assert [e.index for e in embedded.data] == [0, 1] and all(len(e.embedding) > 0 for e in embedded.data)
    if "Reranking" in rpcs:
        reranking = pb.RerankingRequest(providerName=name, credential=cred, query="q", content={0: "a", 1: "b"})
        ranked = await stub.Reranking(reranking, metadata=md)
        assert sorted(r.index for r in ranked.data) == [0, 1]
    if "GetModeration" in rpcs:
        moderation = pb.GetModerationRequest(providerName=name, credential=cred, content="some text")
        moderated = await stub.GetModeration(moderation, metadata=md)
        assert moderated.success and moderated.data
    unsupported = [rpc for rpc in UNARY_RPCS if rpc not in rpcs]
    for rpc in unsupported:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if rpc == "Embedding":
                await stub.Embedding(
                    pb.EmbeddingRequest(providerName=name, credential=cred, content={0: "x"}), metadata=md
                )
            elif rpc == "Reranking":
                await stub.Reranking(pb.RerankingRequest(providerName=name, credential=cred, query="q"), metadata=md)
            else:
                await stub.GetModeration(pb.GetModerationRequest(providerName=name, credential=cred), metadata=md)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED and name in (caught.value.details() or "")


async def test_a_rejected_key_is_an_answer_of_verify_credential(harness: Harness) -> None:
    harness.emulator.enqueue(*[Script(fault=Fault(status=401))] * 3)
    cred = credential(**harness.vendor.credential(harness.emulator))
    request = pb.VerifyCredentialRequest(providerName=harness.vendor.name, credential=cred)
    answer = await harness.gateway.unified.VerifyCredential(request, metadata=harness.gateway.metadata)
    assert not answer.success and answer.code == 401 and SECRET_KEY not in answer.errorMessage
