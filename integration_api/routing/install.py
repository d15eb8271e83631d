"""Installing the configured routes at start-up: the router, and one "route:NAME" provider spec per route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integration_api.routing.router import Router
from integration_api.routing.targets import CredentialResolver, TargetBuilder

if TYPE_CHECKING:
    from integration_api.settings import Settings
    from providers.registry import ProviderRegistry


def install_routes(settings: Settings, registry: ProviderRegistry, credentials: CredentialResolver | None) -> Router:
    """The server's router, its routes registered in `registry` as "route:NAME" providers (ValueError naming the
    route and target when a target's provider is not enabled)."""
    router = Router(settings.routes, TargetBuilder(registry, credentials))
    for spec in router.specs():
        registry.register(spec)
    return router
