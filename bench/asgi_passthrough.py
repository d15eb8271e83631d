"""Scenario (g): the bare ASGI pass-through proxy, the physical limit for Python HTTP on this server stack.

The same stack as the gateway's HTTP front door (Starlette on uvicorn with httptools, on uvloop), forwarding
``POST /v1/chat/completions`` to the upstream with one shared aiohttp session and streaming the upstream's bytes
back as they arrive: no authentication, no parsing, no gateway logic. The gateway's OpenAI-compatible endpoint
(f) does all of that on the same path; (f)/(g) says what the gateway's logic costs.

    python -m bench.asgi_passthrough --port 8091 --upstream http://127.0.0.1:8090/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from integration_api.loadtest import run_event_loop

_FORWARDED = ("authorization", "content-type")


def build_app(upstream: str) -> Starlette:
    session: aiohttp.ClientSession | None = None

    async def chat(request: Request) -> Response:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
        upstream_response = await session.post(
            f"{upstream}/chat/completions", data=await request.body(), headers=headers
        )

        async def body() -> AsyncIterator[bytes]:
            try:
                async for data in upstream_response.content.iter_any():
                    yield data
            finally:
                upstream_response.release()

        media_type = upstream_response.headers.get("content-type", "text/event-stream")
        return StreamingResponse(body(), status_code=upstream_response.status, media_type=media_type)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def serve(port: int, upstream: str) -> None:
    config = uvicorn.Config(
        build_app(upstream),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:8090/v1")
    args = parser.parse_args()
    run_event_loop(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
