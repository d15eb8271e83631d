"""OpenTelemetry traces: GenAI spans from a real gateway, to the SDK's in-memory exporter and, by OTLP/gRPC, to a
receiver started here; the caller's traceparent is the parent; nothing at all when tracing is off."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from integration_api.observability.spans import Spans
from integration_api.observability.tracing import layers_for, tracing_enabled, tracing_layers
from integration_api.pipeline import Pipeline, default_layers
from integration_api.testing.emulators.base import Fault, Script
from integration_api.testing.emulators.openai import OpenAIEmulator
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import chat_request, credential
from tests.http.conftest import free_socket

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ROOT = Path(__file__).resolve().parents[2]


def traced(running: RunningGateway, provider: TracerProvider) -> None:
    """Give the running gateway's pipeline the tracing layers over `provider` (the OTEL_* variables would make
    them over an OTLP provider instead): the default layers, the request span outside, attempt spans inside."""
    pipeline = running.server.gateway.pipeline
    assert pipeline.state is not None
    layers = layers_for(provider)
    running.server.gateway.pipeline = Pipeline(
        [*layers.outer, *default_layers(running.server.settings, pipeline.state), *layers.attempts], pipeline.state
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(make_settings(tmp_path))
    yield running
    await running.channel.close()
    await running.server.stop()


async def test_spans_of_a_retried_chat_continue_the_callers_trace(gateway: RunningGateway) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced(gateway, provider)
    async with OpenAIEmulator() as emulator:
        emulator.enqueue(Script(fault=Fault(status=503)), Script(text="hello traced world", input_tokens=7))
        metadata = (*gateway.metadata, ("traceparent", TRACEPARENT))
        stream = gateway.open_stream(metadata)
        cred = credential(key="sk-test", base_url=emulator.base_url)
        await stream.send(chat_request("r1", "hi", provider="openai", cred=cred, name="gpt-4o", temperature=0.5))
        collected = await stream.read_until_done(["r1"])
        assert collected.terminal("r1").success

    spans = exporter.get_finished_spans()
    (chat,) = [s for s in spans if s.name == "chat gpt-4o"]
    attempts = sorted((s for s in spans if s.name == "upstream attempt"), key=lambda s: s.start_time or 0)
    assert len(spans) == 3 and len(attempts) == 2
    assert chat.kind == SpanKind.CLIENT
    assert chat.context is not None and chat.parent is not None
    assert f"{chat.context.trace_id:032x}" == TRACE_ID and f"{chat.parent.span_id:016x}" == PARENT_ID
    assert chat.parent.is_remote
    attributes = dict(chat.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 3  # one per word of the reply
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
    assert attributes["integration_api.request_id"] == "r1"
    assert attributes["integration_api.upstream_attempts"] == 2
    assert chat.status.status_code == StatusCode.UNSET
    first, second = attempts
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == chat.context.span_id
        assert attempt.context is not None and attempt.context.trace_id == chat.context.trace_id
    assert first.status.status_code == StatusCode.ERROR
    assert dict(first.attributes or {})["error.type"] == "UNAVAILABLE"
    assert dict(first.attributes or {})["integration_api.attempt"] == 1
    assert dict(second.attributes or {})["integration_api.attempt"] == 2
    assert second.status.status_code == StatusCode.UNSET
    provider.shutdown()


async def test_a_failed_request_span_has_its_error_type(gateway: RunningGateway) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced(gateway, provider)
    stream = gateway.open_stream()
    await stream.send(chat_request("bad", "x", provider="simulated", simulated_error=400))
    await stream.read_until_done(["bad"])
    spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    (request_span,) = [s for s in spans if s.name == "chat"]  # no model named: the operation alone
    assert request_span.parent is None  # no traceparent: a new trace
    assert request_span.status.status_code == StatusCode.ERROR
    assert dict(request_span.attributes or {})["error.type"] == "INVALID_ARGUMENT"
    provider.shutdown()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.changed = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        self.changed.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.spans) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_real_gateway_exports_spans_by_otlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")  # export within 20 ms rather than 5 s
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    running = await start_gateway(make_settings(tmp_path))  # its default layers read the OTEL_* variables
    http_port = await running.server.start_http(free_socket())
    try:
        headers = {"authorization": f"Bearer {running.api_key}", "traceparent": TRACEPARENT}
        body = {"model": "simulated/echo", "messages": [{"role": "user", "content": "over http"}]}
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"http://127.0.0.1:{http_port}/v1/chat/completions", headers=headers, json=body)
        assert response.status_code == 200
        await receiver.wait_for(2)  # the request's span and its one attempt
    finally:
        request_layer = running.server.gateway.pipeline.layers[0]
        spans_of_gateway = getattr(request_layer, "__self__", None)
        await running.channel.close()
        await running.server.stop()
        if isinstance(spans_of_gateway, Spans):
            spans_of_gateway.provider.shutdown()
        await server.stop(0)
    by_name = {span.name: span for span in receiver.spans}
    chat, attempt = by_name["chat echo"], by_name["upstream attempt"]
    assert chat.trace_id.hex() == TRACE_ID and chat.parent_span_id.hex() == PARENT_ID
    assert attempt.parent_span_id == chat.span_id
    assert chat.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    attributes = {a.key: a.value for a in chat.attributes}
    assert attributes["gen_ai.provider.name"].string_value == "simulated"
    assert attributes["gen_ai.usage.output_tokens"].int_value == 2
    assert [v.string_value for v in attributes["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]


def test_tracing_is_off_without_an_endpoint() -> None:
    assert not tracing_enabled({})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"})
    assert not tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"})
    assert not tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_TRACES_EXPORTER": "none"})
    layers = tracing_layers({})
    assert layers.outer == () and layers.attempts == ()


def test_off_the_server_never_imports_the_sdk(tmp_path: Path) -> None:
    """In a fresh interpreter: build a server's pipeline with tracing off; no OpenTelemetry SDK module is loaded."""
    script = f"""
import json, os, sys
for name in [n for n in os.environ if n.startswith("OTEL_")]:
    del os.environ[name]
from integration_api.server import GatewayServer
from integration_api.settings import Settings
server = GatewayServer(Settings(data_dir={str(tmp_path)!r}, port=0, auth_disabled=True))
print(json.dumps([len(server.gateway.pipeline.layers), sorted(m for m in sys.modules if m.startswith("opentelemetry"))]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    layer_count, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert layer_count == 5  # usage, stats, policy, sessions, resilience: no tracing layer
    assert not [m for m in modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
