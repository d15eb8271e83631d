"""The HTTP listener: uvicorn serving the ASGI app on the running event loop (the one grpc.aio serves on).

`HttpServer` binds its own socket (SO_REUSEPORT with several workers, as the gRPC port), starts uvicorn's protocol
servers on it without uvicorn's own signal handling or logging set-up (the process's `serve()` owns SIGTERM and
logging), and drains like gRPC: stop accepting, close idle keep-alive connections, let in-flight responses finish
within the grace period, then cancel what is left.

Why uvicorn and not granian: a trivial 20-event SSE endpoint, Starlette, one process, on this 2-core box
(aiohttp client, 4-5 s runs, shared CPU, so rough): at 50 concurrent requests uvicorn (httptools, uvloop, run
embedded on our loop) ~0.9-2.1k req/s, granian 2.8 ~1.5-2.3k in its own process and ~1.5-2.3k embedded; at 1
request at a time uvicorn ~1.8k, embedded granian ~1.1k (each request hops between granian's Rust threads and the
Python loop). Throughput is a wash, latency favours uvicorn, and the requirement decides it: the HTTP side must
run on the same asyncio loop and share the one `Gateway` with gRPC. uvicorn's `Server` is plain asyncio code that
does exactly that with a stable API; granian's embedded server is marked experimental and its standalone mode
runs its own loop and threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket

import uvicorn
from starlette.types import ASGIApp

from integration_api.settings import Settings

logger = logging.getLogger(__name__)
BACKLOG = 2048


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


def _whole_seconds(seconds: float) -> int:
    # uvicorn takes whole seconds; rounding up never cuts an in-flight response short of its grace.
    return math.ceil(seconds)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process's `serve()` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class HttpServer:
    """One uvicorn server for `app` on the current event loop."""

    def __init__(
        self, app: ASGIApp, settings: Settings, what: str = "HTTP (OpenAI-compatible API, gRPC-JSON bridge, chat page)"
    ) -> None:
        self.settings = settings
        self.what = what  # for the log line: the metrics port is a server of its own (integration_api.observability)
        self.config = uvicorn.Config(
            app,
            http="httptools",
            ws="auto",
            loop="none",  # the loop is already running: grpc's
            lifespan="off",
            log_config=None,  # our logging is configured once, by integration_api.logs
            access_log=False,  # integration_api.access_log records every request instead
            timeout_keep_alive=max(1, round(settings.http_keepalive_timeout_s)),
            timeout_graceful_shutdown=_whole_seconds(settings.grace_period_s),
            server_header=False,
            proxy_headers=False,
        )
        self._server = _EmbeddedServer(self.config)
        self._socket: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return self.settings.http_host or self.settings.host

    async def start(self, sock: socket.socket | None = None) -> int:
        """Listen on `sock` (tests pass one bound to port 0), else on http_host:http_port; returns the port."""
        if sock is None:
            sock = bind_socket(self.host, self.settings.http_port, reuse_port=self.settings.workers > 1)
        self._socket = sock
        self.config.load()
        self._server.lifespan = self.config.lifespan_class(self.config)  # "off": a no-op, as in uvicorn's serve()
        await self._server.startup(sockets=[sock])
        # uvicorn's main loop only refreshes the Date header each second and watches should_exit.
        self._ticker = asyncio.create_task(self._server.main_loop(), name="http-ticker")
        self.port = int(sock.getsockname()[1])
        logger.info("%s listening on %s:%d", self.what, self.host, self.port)
        return self.port

    async def drain_and_stop(self, grace_s: float | None = None) -> None:
        """Stop accepting; in-flight responses get `grace_s` (default: the grace period) to finish."""
        if self._ticker is None:
            return
        self._server.should_exit = True
        await self._ticker
        self._ticker = None
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        # uvicorn's shutdown closes every WebSocket at once (1012). The gateway is already draining, which ends each
        # bridged StreamChat by itself once its in-flight requests are done: so stop accepting, give the open calls
        # (WebSockets and responses) the grace, and only then let uvicorn close what is left.
        for listener in self._server.servers:
            listener.close()
        loop = asyncio.get_running_loop()
        started = loop.time()
        running = set(self._server.server_state.tasks)
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        self.config.timeout_graceful_shutdown = _whole_seconds(max(0.0, grace - (loop.time() - started)))
        await self._server.shutdown(sockets=[self._socket] if self._socket is not None else None)

    async def stop(self) -> None:
        """Immediate stop: open responses are cancelled."""
        await self.drain_and_stop(0)
