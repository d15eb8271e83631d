"""HTTP headers -> the gRPC metadata `Gateway.authenticate` reads, so HTTP and gRPC share one authenticator.

``x-api-key`` and ``x-internal-service-key`` pass through as they are (as does ``traceparent``).
``Authorization: Bearer T`` (what the OpenAI SDKs send) becomes ``x-api-key: T`` when T looks like a gateway API
key (``ia_<id>_<secret>``), else ``x-internal-service-key: T`` (a service JWT). The authenticator itself refuses
conflicting or invalid values; nothing is decided here beyond the renaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from auth.api_keys import KEY_PREFIX
from auth.authenticator import API_KEY_HEADER, SERVICE_KEY_HEADER
from integration_api.context import TRACEPARENT_HEADER, StreamContext
from integration_api.gateway import Gateway

AUTHORIZATION_HEADER = "authorization"
_BEARER = "bearer "
_PASSED_THROUGH = frozenset({API_KEY_HEADER, SERVICE_KEY_HEADER, TRACEPARENT_HEADER})


def _items(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    # Starlette's Headers.items() yields repeated headers once per value, which the authenticator needs to see.
    return headers.items() if isinstance(headers, Mapping) else headers


def grpc_metadata(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (lower-case name, value) pairs of `headers` that carry a credential or a trace context."""
    metadata: list[tuple[str, str]] = []
    for name, value in _items(headers):
        key = name.lower()
        if key in _PASSED_THROUGH:
            metadata.append((key, value))
        elif key == AUTHORIZATION_HEADER and value[: len(_BEARER)].lower() == _BEARER:
            token = value[len(_BEARER) :].strip()
            if token:
                metadata.append((API_KEY_HEADER if token.startswith(KEY_PREFIX) else SERVICE_KEY_HEADER, token))
    return metadata


async def authenticate(
    gateway: Gateway, headers: Mapping[str, str] | Iterable[tuple[str, str]], peer: str
) -> StreamContext:
    """The context of one HTTP call (or WebSocket) from its headers; raises `Unauthenticated` like gRPC does."""
    return await gateway.authenticate(grpc_metadata(headers), peer, None)


def peer_of(client: tuple[str, int] | None) -> str:
    """A peer string shaped like gRPC's (``ipv4:127.0.0.1:5000``) from an ASGI scope's ``client``."""
    if client is None:
        return "unknown"
    host, port = client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
