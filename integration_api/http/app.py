"""The ASGI application of the HTTP front door: the OpenAI-compatible API, the gRPC-JSON bridge, the chat page,
Prometheus metrics.

One Starlette app over the one `Gateway` (the gRPC server's), with the request-body limit
(``integration_api.http.limits``) in front of every route.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from integration_api.gateway import Gateway
from integration_api.http.bridge import BridgeServices, bridge_routes
from integration_api.http.limits import BodyLimit
from integration_api.http.openai_api import openai_routes
from integration_api.http.page import page_routes
from integration_api.observability.metrics import metrics_routes
from integration_api.observability.service import exporter_for
from integration_api.settings import Settings


def build_app(gateway: Gateway, settings: Settings, handlers: BridgeServices) -> Starlette:
    """`handlers` is the service table the gRPC server registers (``integration_api.services.service_handlers``)."""
    routes = [*openai_routes(gateway, settings), *bridge_routes(gateway, handlers), *page_routes()]
    routes += metrics_routes(exporter_for(gateway, settings))  # GET /metrics (integration_api.observability)
    return Starlette(routes=routes, middleware=[Middleware(BodyLimit, limit=settings.http_max_body_bytes)])
