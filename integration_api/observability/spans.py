"""The spans of a traced request, after the OpenTelemetry GenAI semantic conventions (imported only when tracing).

One CLIENT span per request, named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat gpt-4o-mini``),
covering the whole logical call with its retries, as the conventions ask; its parent is the caller's W3C
``traceparent`` (gRPC metadata or HTTP header, parsed into the request's `TraceContext`) when it sent one.
Attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``, the request
parameters the conventions name, and at the end ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``gen_ai.response.finish_reasons``, ``gen_ai.response.id``, or ``error.type`` and an ERROR status.

Inside it, one child span per upstream attempt (``upstream attempt``, attribute ``integration_api.attempt``): the
attempt layer sits inside the resilience layer, so each retry is its own span.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from integration_api import __version__
from integration_api.context import RequestContext, TraceContext
from integration_api.errors import GatewayError
from providers.base import ChatStream, Provider, ProviderLayer
from providers.types import (
    ChatCall,
    ChatFinished,
    Usage,
)

T = TypeVar("T")
OPERATIONS = {
    "StreamChat": "chat",
    "Chat": "chat",
    "Embedding": "embeddings",
    "Reranking": "rerank",
    "GetModeration": "moderation",
    "VerifyCredential": "verify_credential",
}
# Our provider names -> the conventions' well-known gen_ai.provider.name values (others are passed as they are).
PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "gemini": "gcp.gemini",
    "vertexai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
}
# model.* parameters -> gen_ai.request.* attributes
REQUEST_PARAMETERS = {
    "model.max_tokens": "gen_ai.request.max_tokens",
    "model.max_completion_tokens": "gen_ai.request.max_tokens",
    "model.temperature": "gen_ai.request.temperature",
    "model.top_p": "gen_ai.request.top_p",
    "model.top_k": "gen_ai.request.top_k",
    "model.seed": "gen_ai.request.seed",
    "model.frequency_penalty": "gen_ai.request.frequency_penalty",
    "model.presence_penalty": "gen_ai.request.presence_penalty",
}


def parent_context(trace_context: TraceContext | None) -> Context | None:
    """The OpenTelemetry context whose current span is the caller's (remote) span, or None: a new trace."""
    if trace_context is None:
        return None
    remote = SpanContext(
        int(trace_context.trace_id, 16),
        int(trace_context.parent_span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(trace_context.flags & 0xFF),
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def error_type(error: BaseException) -> str:
    if isinstance(error, GatewayError):
        return error.status
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return type(error).__qualname__


def _end(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_attribute("error.type", error_type(error))
        message = error.message if isinstance(error, GatewayError) else ""
        span.set_status(Status(StatusCode.ERROR, message or None))
    span.end()


class Spans:
    """Makes the spans of every traced request of one server, over `provider`."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("integration_api", __version__)
        # The open request span of each request (by id of its RequestContext, alive while the request runs): the
        # parent of its attempts' spans, which are made by another layer of the same request.
        self.open: dict[int, Span] = {}

    def request_layer(self, inner: Provider, context: RequestContext) -> Provider:
        return RequestSpanLayer(inner, context, self)

    def attempt_layer(self, inner: Provider, context: RequestContext) -> Provider:
        return AttemptSpanLayer(inner, context, self)


def _attributes(context: RequestContext, operation: str) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER_NAMES.get(context.provider, context.provider),
        "integration_api.rpc": context.rpc,
        "integration_api.stream_id": context.stream_id,
    }
    if context.model:
        attributes["gen_ai.request.model"] = context.model
    if context.request_id:
        attributes["integration_api.request_id"] = context.request_id
    if context.session_id:
        attributes["gen_ai.conversation.id"] = context.session_id
    return attributes


class RequestSpanLayer(ProviderLayer):
    """The request's span, outside every other layer."""

    def __init__(self, inner: Provider, context: RequestContext, spans: Spans) -> None:
        super().__init__(inner, context)
        self._spans = spans

    def _start(self, parameters: dict[str, object] | None = None) -> Span:
        context = self.context
        operation = OPERATIONS.get(context.rpc, context.rpc)
        attributes = _attributes(context, operation)
        for name, value in (parameters or {}).items():
            attribute = REQUEST_PARAMETERS.get(name)
            if attribute is not None and isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        name = f"{operation} {context.model}" if context.model else operation
        span = self._spans.tracer.start_span(
            name, context=parent_context(context.trace), kind=SpanKind.CLIENT, attributes=attributes
        )
        self._spans.open[id(context)] = span
        return span

    def _finish(self, span: Span, error: BaseException | None) -> None:
        self._spans.open.pop(id(self.context), None)
        attempts = self.context.stats.attempts
        if attempts:
            span.set_attribute("integration_api.upstream_attempts", attempts)
        _end(span, error)

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        span = self._start(dict(call.parameters))
        error: BaseException | None = None
        try:
            async for event in self.inner.stream_chat(call):
                if isinstance(event, ChatFinished):
                    span.set_attribute("gen_ai.usage.input_tokens", event.usage.input_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", event.usage.output_tokens)
                    span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
                    if event.provider_request_id:
                        span.set_attribute("gen_ai.response.id", event.provider_request_id)
                yield event
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(span, error)

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        span = self._start()
        error: BaseException | None = None
        try:
            result = await operation()
            if usage_of is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage_of(result).input_tokens)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(span, error)


class AttemptSpanLayer(ProviderLayer):
    """One span per upstream attempt, inside the resilience layer (which counts the attempt before making it)."""

    def __init__(self, inner: Provider, context: RequestContext, spans: Spans) -> None:
        super().__init__(inner, context)
        self._spans = spans

    def _start(self) -> Span:
        context = self.context
        parent = self._spans.open.get(id(context))
        attributes: dict[str, AttributeValue] = {
            "gen_ai.provider.name": PROVIDER_NAMES.get(context.provider, context.provider),
            "integration_api.attempt": context.stats.attempts,
        }
        if context.model:
            attributes["gen_ai.request.model"] = context.model
        return self._spans.tracer.start_span(
            "upstream attempt",
            context=trace.set_span_in_context(parent) if parent is not None else parent_context(context.trace),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        span = self._start()
        error: BaseException | None = None
        try:
            async for event in self.inner.stream_chat(call):
                yield event
        except BaseException as exc:
            error = exc
            raise
        finally:
            _end(span, error)

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        span = self._start()
        error: BaseException | None = None
        try:
            return await operation()
        except BaseException as exc:
            error = exc
            raise
        finally:
            _end(span, error)
