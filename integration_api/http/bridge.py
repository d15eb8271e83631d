"""The gRPC-JSON bridge: every RPC the gRPC server registers, over HTTP POST (unary, server streaming as SSE) and
WebSocket (client streaming, bidi), with messages in the protobuf JSON mapping.

Entry point for app.py: ``bridge_routes(gateway: Gateway, services: BridgeServices) -> list[BaseRoute]``, where
``services`` is ``integration_api.services.service_handlers(gateway)`` (plus any extra services, e.g. in tests).
The framing is documented in docs/bridge.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from starlette.routing import BaseRoute

# Full service name -> (its descriptor, method name -> the handler the gRPC server registers).
BridgeServices = Mapping[str, tuple[ServiceDescriptor, Mapping[str, grpc.RpcMethodHandler]]]


def bridge_routes(gateway: Any, services: BridgeServices) -> list[BaseRoute]:
    """The bridge's routes (work in progress: none yet)."""
    return []
