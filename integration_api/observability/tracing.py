"""Whether the server traces, from the standard OpenTelemetry environment variables, and its pipeline layers.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Off, `tracing_layers` returns no layer at all and the
OpenTelemetry SDK is never imported (this module imports nothing of it): tracing costs nothing. On, spans go by
OTLP/gRPC through a batch processor (its own thread), configured by the SDK from the usual variables
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``...). These are OpenTelemetry's variables, read by its SDK: the one exception to "only the settings
read the environment".

The spans themselves are made by ``integration_api.observability.spans`` (imported only when tracing is on).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integration_api.context import RequestContext
from providers.base import Provider

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

Layer = Callable[[Provider, RequestContext], Provider]
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SERVICE_NAME = "integration-api"


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


@dataclass(frozen=True, slots=True)
class TracingLayers:
    """Where the tracing layers go in the pipeline: `outer` outside every layer (the request's span, covering
    policy and retries), `attempts` inside the resilience layer (one child span per upstream attempt)."""

    outer: tuple[Layer, ...] = ()
    attempts: tuple[Layer, ...] = ()


def otlp_provider(environ: Mapping[str, str]) -> TracerProvider:
    """A tracer provider exporting by OTLP/gRPC in batches, configured from the OTEL_* variables."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def layers_for(provider: TracerProvider) -> TracingLayers:
    """The tracing layers over `provider` (tests pass one with an in-memory exporter)."""
    from integration_api.observability.spans import Spans

    spans = Spans(provider)
    return TracingLayers(outer=(spans.request_layer,), attempts=(spans.attempt_layer,))


def tracing_layers(environ: Mapping[str, str] | None = None) -> TracingLayers:
    """The tracing layers when the environment turns tracing on, else none."""
    environ = os.environ if environ is None else environ
    if not tracing_enabled(environ):
        return TracingLayers()
    return layers_for(otlp_provider(environ))
