"""What a server runs for metrics besides the HTTP app's ``/metrics`` route.

`exporter_for` builds the one exporter of a gateway (adding the other workers' counters with ``--workers N``);
`MetricsService` is started by ``serve()``: the worker publisher (``worker_metrics``) and, when
``metrics_port`` is set, a listener serving only ``/metrics`` (for a gateway with HTTP off, or to keep scrapes
off the public HTTP port).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from integration_api.observability.metrics import MetricsExporter, local_view, metrics_routes
from integration_api.observability.worker_metrics import WorkerPublisher, read_peers, worker_dir
from integration_api.settings import Settings

if TYPE_CHECKING:
    from integration_api.gateway import Gateway
    from integration_api.http.server import HttpServer
    from integration_api.server import GatewayServer


def exporter_for(gateway: Gateway, settings: Settings) -> MetricsExporter:
    directory = worker_dir(settings)
    clients = gateway.clients
    if directory is None:
        return MetricsExporter(gateway.state.stats, lambda: clients.evictions)
    return MetricsExporter(gateway.state.stats, lambda: clients.evictions, lambda: read_peers(directory, os.getpid()))


def metrics_app(exporter: MetricsExporter) -> Starlette:
    return Starlette(routes=metrics_routes(exporter))


class MetricsService:
    """The worker publisher and the metrics port of one server; `start` after the server, `aclose` after its drain."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.publisher: WorkerPublisher | None = None
        self.http: HttpServer | None = None
        self.port = 0

    async def start(self) -> None:
        settings, gateway = self.server.settings, self.server.gateway
        directory = worker_dir(settings)
        if directory is not None:
            stats, clients = gateway.state.stats, gateway.clients
            self.publisher = WorkerPublisher(directory, lambda: local_view(stats, clients.evictions))
            self.publisher.start()
        if settings.metrics_port:
            from integration_api.http.server import HttpServer, bind_socket

            host = settings.http_host or settings.host
            sock = bind_socket(host, settings.metrics_port, reuse_port=settings.workers > 1)
            self.http = HttpServer(
                metrics_app(exporter_for(gateway, settings)), settings, "Prometheus metrics (/metrics)"
            )
            self.port = await self.http.start(sock)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.drain_and_stop(0)
            self.http = None
        if self.publisher is not None:
            await self.publisher.aclose()
            self.publisher = None
