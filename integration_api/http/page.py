"""The web chat page: ``/`` serves static/index.html, ``/static/{name}`` its script and style sheet.

The page (plain HTML and a small script, no build step, nothing loaded from elsewhere) talks to the gateway over
one WebSocket to the gRPC-JSON bridge's StreamChat (integration_api/http/bridge.py; framing in docs/bridge.md).
The files are read once when the routes are built and served from memory, each with headers that keep the
page to its own origin: the Content-Security-Policy allows scripts, styles and connections (the WebSocket) to
this origin only, so a key typed into the page cannot be sent anywhere else by injected markup.

Entry point for app.py: ``page_routes() -> list[BaseRoute]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

_STATIC = "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    # 'self' in connect-src covers ws:/wss: to the same host and port (CSP level 3).
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Small files that change with the package: revalidating each time costs nothing and avoids stale scripts.
    "cache-control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str

    async def respond(self, request: Request) -> Response:
        return Response(self.body, media_type=self.media_type, headers=_HEADERS)


def _assets() -> dict[str, _Asset]:
    folder = resources.files(__package__ or "integration_api.http") / _STATIC
    assets = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in _TYPES:
            assets[entry.name] = _Asset(entry.read_bytes(), _TYPES[suffix])
    return assets


def page_routes() -> list[BaseRoute]:
    """``GET /`` (the page) and ``GET /static/{name}`` for each of its files; anything else there is a 404."""
    assets = _assets()
    routes: list[BaseRoute] = [Route("/", assets["index.html"].respond, methods=["GET", "HEAD"], name="chat_page")]
    for name, asset in sorted(assets.items()):
        routes.append(Route(f"/{_STATIC}/{name}", asset.respond, methods=["GET", "HEAD"]))
    return routes
