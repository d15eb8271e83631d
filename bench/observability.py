"""Row (o): (b) with metrics scraped and tracing on, against (b): what observability costs (target >= 0.9x).

The gateway runs as in (b) plus ``INTEGRATION_API_METRICS_PORT`` (scraped once a second here, as Prometheus would,
only faster) and ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at an OTLP/gRPC trace receiver in the bench process
(`TraceSink`: it counts the spans and drops them), with the SDK's default batch processor: every request makes
its span and one attempt span, exported off the event loop.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SCRAPE_INTERVAL_S = 1.0


class TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        # The OpenTelemetry package ships its generated gRPC module without type hints.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self.server.stop(0)


class Scraper:
    """GETs /metrics every `SCRAPE_INTERVAL_S` until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_INTERVAL_S):
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=5) as response:
                response.read()
                self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def observed_settings(sink: TraceSink, metrics_port: int) -> dict[str, str]:
    return {
        "INTEGRATION_API_METRICS_PORT": str(metrics_port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
