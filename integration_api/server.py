"""Building and running the gRPC server: services, health, reflection, keepalive, graceful drain.

`GatewayServer` is used the same way by `integration-api serve`, the demo and the tests (which start it on
127.0.0.1 port 0). On SIGTERM it drains: health turns NOT_SERVING, new streams are refused, open streams finish
their in-flight requests within the grace period, then the server stops. The HTTP front door
(``integration_api.http``: the OpenAI-compatible API, the gRPC-JSON bridge, the chat page) runs on the same event
loop over the same `Gateway` once `start_http` is called (`serve()` does, unless http_port is 0), and drains with it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from integration_api.gateway import Authenticator, Gateway
from integration_api.lifecycle import Lifecycle
from integration_api.observability.service import MetricsService
from integration_api.pipeline import Layer, build_pipeline
from integration_api.reflection import enable_reflection
from integration_api.services import add_services, service_handlers
from integration_api.settings import Settings
from providers.clients import ClientCache
from providers.registry import ProviderRegistry, default_registry, preload

if TYPE_CHECKING:
    from integration_api.http.server import HttpServer

logger = logging.getLogger(__name__)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Let clients ping idle streams every 10 s without being told "too many pings".
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        # grpc core refuses (CANCELLED) a growing share of new calls once more than the soft limit (default
        # 1,000) arrived faster than the server accepts them: every backend reconnecting after a deploy does that.
        ("grpc.server.max_pending_requests", settings.max_pending_streams),
        ("grpc.server.max_pending_requests_hard_limit", 2 * settings.max_pending_streams),
        *_connection_age_options(settings),
    ]


def _connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """GOAWAY after max_connection_age_s (gRPC adds +-10% jitter), so new calls open a new connection.

    gRPC's own grace would then cut a StreamChat stream still open on the old connection, requests in flight and
    all; the engine instead retires each stream at the same age, from when the stream opened (later than its
    connection, by at most one age) and gives its requests max_connection_age_grace_s. gRPC's grace therefore
    covers both, so it only ever closes connections whose streams outlived their own retirement.
    """
    if settings.max_connection_age_s <= 0:
        return []
    grace_s = 1.1 * settings.max_connection_age_s + settings.max_connection_age_grace_s + 1
    return [
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(grace_s * 1000)),
    ]


class GatewayServer:
    """One grpc.aio server with every service of the protocol plus health and reflection."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: ProviderRegistry | None = None,
        authenticator: Authenticator | None = None,
        layers: Sequence[Layer] = (),
    ) -> None:
        """`layers` go outside the default pipeline layers (the first listed outermost)."""
        self.settings = settings
        self.registry = registry or default_registry()
        self.registry.on_load(lambda _name: freeze_heap())  # an SDK imported on first use lives as long as we do
        self.authenticator = authenticator or _default_authenticator(settings)
        self.lifecycle = Lifecycle(settings.grace_period_s)
        self.clients = ClientCache(settings.client_cache_size, settings.client_cache_ttl_s)
        pipeline = build_pipeline(settings, layers)
        self.gateway = Gateway(settings, self.registry, self.clients, self.authenticator, self.lifecycle, pipeline)
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=server_options(settings))
        self.port = 0
        self.handlers = service_handlers(self.gateway)  # the one table gRPC and the HTTP bridge serve
        self._service_names = add_services(self.gateway, self.server, self.handlers)
        self.http: HttpServer | None = None
        self.http_port = 0
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection([*self._service_names, health.SERVICE_NAME], self.server)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> int:
        if self.authenticator.disabled:
            logger.warning("!!! AUTHENTICATION IS DISABLED: any client can use this gateway and its providers !!!")
        await self.gateway.state.usage.start()  # the usage database (and its migrations) before the port opens
        self.port = _listen(self.server, self.settings)
        await self.server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "integration-api listening on %s (providers: %s)", self.address, ", ".join(s.name for s in self.registry)
        )
        return self.port

    async def start_http(self, sock: socket.socket | None = None) -> int:
        """Serve HTTP on `sock` (tests pass one bound to port 0), else on http_host:http_port; returns the port."""
        from integration_api.http.app import build_app
        from integration_api.http.server import HttpServer

        self.http = HttpServer(build_app(self.gateway, self.settings, self.handlers), self.settings)
        self.http_port = await self.http.start(sock)
        return self.http_port

    async def drain_and_stop(self, grace_s: float | None = None) -> None:
        """Graceful shutdown: refuse new streams, let in-flight requests finish within the grace, stop."""
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        self.lifecycle.grace_s = grace
        logger.info("draining: finishing in-flight requests within %.1f s", grace)
        await self.health.enter_graceful_shutdown()
        self.lifecycle.drain()
        await asyncio.gather(self.server.stop(grace), self._stop_http(grace))
        await self.gateway.state.usage.aclose()  # every request has ended: write each pending usage record
        await self.clients.aclose()
        await self.gateway.state.aclose()  # the session store's connection and thread

    async def stop(self) -> None:
        """Immediate stop (tests): cancels every RPC."""
        await asyncio.gather(self.server.stop(0), self._stop_http(0))
        await self.clients.aclose()
        await self.gateway.state.aclose()  # the session store's connection and thread

    async def _stop_http(self, grace_s: float) -> None:
        if self.http is not None:
            await self.http.drain_and_stop(grace_s)
            self.http = None

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _listen(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind the port, with TLS when a certificate and key are configured (and client certificates required when
    a client CA is); returns the bound port."""
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return int(server.add_insecure_port(address))
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    key_and_chain = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    if settings.tls_client_ca is None:
        return int(server.add_secure_port(address, grpc.ssl_server_credentials([key_and_chain])))
    # mTLS: the handshake itself refuses a client without a certificate signed by the CA, before any RPC.
    credentials = grpc.ssl_server_credentials(
        [key_and_chain], root_certificates=settings.tls_client_ca.read_bytes(), require_client_auth=True
    )
    return int(server.add_secure_port(address, credentials))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _default_authenticator(settings: Settings) -> Authenticator:
    from auth import Authenticator as KeyStoreAndJwtAuthenticator

    return KeyStoreAndJwtAuthenticator(settings)


def freeze_heap() -> None:
    """Keep what is loaded by now (modules, SDKs, descriptors: ~300,000 objects) out of the collector's full passes.

    They live as long as the process, yet a full collection walks them all: ~200 ms with every adapter loaded, a
    pause every stream on the server feels at once. Frozen, a full pass walks only what came after.
    """
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    server = GatewayServer(settings)
    if settings.preload_providers:
        # An SDK takes 0.1-1 s to import (anthropic ~1 s): imported by its first request, on the event loop, it
        # would stall every stream of the process meanwhile. Imported now, before the port opens, nothing waits.
        preload(server.registry)
    await server.start()
    if settings.http_port:
        await server.start_http()
    metrics = MetricsService(server)  # the workers' metrics publisher, metrics_port (integration_api.observability)
    await metrics.start()
    freeze_heap()
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _resolve, stopping)
    await stopping
    await server.drain_and_stop()
    await metrics.aclose()
