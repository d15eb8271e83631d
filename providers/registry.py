"""The registry from provider name to `ProviderSpec`.

Built-in providers register through the same `register` call a third party would use; the server builds one
registry at start-up (`default_registry`) and passes it down.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from integration_api.errors import InvalidArgument, Unimplemented
from providers.base import ProviderSpec

# Every provider name the protocol knows, whether or not an adapter for it is enabled in this build.
PROTOCOL_PROVIDERS = ("openai", "azure", "anthropic", "gemini", "vertexai", "mistral", "cohere", "replicate")


class ProviderRegistry:
    """Provider specs by name. Lookups of unknown names fail with a message listing the enabled ones."""

    def __init__(self) -> None:
        self._specs: dict[str, ProviderSpec] = {}

    def register(self, spec: ProviderSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"provider {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ProviderSpec:
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        enabled = ", ".join(sorted(self._specs)) or "none"
        if name in PROTOCOL_PROVIDERS:
            raise Unimplemented(f"provider {name!r} is not enabled on this server (enabled: {enabled})")
        raise InvalidArgument(f"unknown provider {name!r} (enabled: {enabled})")

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ProviderSpec]:
        return iter(sorted(self._specs.values(), key=lambda spec: spec.name))


# Built-in adapters: module `providers.<name>` exposes `SPEC`. A module not present in this build is skipped.
BUILTIN_MODULES = ("simulated", *PROTOCOL_PROVIDERS)


def default_registry() -> ProviderRegistry:
    """The registry of every built-in provider."""
    registry = ProviderRegistry()
    for module_name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(f"providers.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"providers.{module_name}":
                raise
            continue
        registry.register(module.SPEC)
    return registry
