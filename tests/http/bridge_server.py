"""A real HTTP server for the bridge tests: the bridge's routes for a running gateway, on 127.0.0.1 port 0.

The bridge serves the table the gRPC server registers (`GatewayServer.handlers`), plus any extra services, on
uvicorn (httptools, on the test's event loop, as in production) with a socket bound to port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from integration_api.http.bridge import BridgeServices, bridge_routes
from tests.conftest import RunningGateway

UNIFIED = "/integration_api.UnifiedProviderService"


@dataclass(frozen=True)
class Bridge:
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner owns the signals
        yield


@contextlib.asynccontextmanager
async def serve_bridge(running: RunningGateway, extra: BridgeServices | None = None) -> AsyncIterator[Bridge]:
    """Without `extra`: the production HTTP server (`GatewayServer.start_http`: the whole app, the bridge over the
    very handler table the gRPC server registered). With `extra`: a bridge-only app over that table plus `extra`."""
    if extra is None:
        port = await running.server.start_http(socket.create_server(("127.0.0.1", 0)))
        yield Bridge(port)  # stopped with the gateway
        return
    gateway = running.server.gateway
    app = Starlette(routes=bridge_routes(gateway, {**running.server.handlers, **extra}))
    config = uvicorn.Config(app, http="httptools", loop="none", lifespan="off", log_config=None, access_log=False)
    server = _Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)  # uvicorn offers no start event to wait on
    try:
        yield Bridge(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await serving
        sock.close()
