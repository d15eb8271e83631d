"""The registry from provider name to `ProviderSpec`.

Built-in providers register through the same `register` call a third party would use; the server builds one
registry at start-up (`default_registry`) and passes it down. Vendor adapters are imported on first use: their
SDKs take seconds to import, and a server that never calls a vendor should not pay for it.
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Iterator

from integration_api.errors import InvalidArgument, Unimplemented
from providers.base import CHAT_RPCS, CredentialValue, Provider, ProviderEnv, ProviderSpec

# Every provider name the protocol knows, whether or not an adapter for it is enabled in this build.
PROTOCOL_PROVIDERS = ("openai", "azure", "anthropic", "gemini", "vertexai", "mistral", "cohere", "replicate")

# Built-in adapters: module `providers.<name>` exposes `SPEC`, whose RPCs must match this table (a test checks).
BUILTIN_RPCS: dict[str, frozenset[str]] = {
    "openai": CHAT_RPCS | {"Embedding", "GetModeration"},
    "azure": CHAT_RPCS | {"Embedding", "GetModeration"},
    "anthropic": CHAT_RPCS,
    "gemini": CHAT_RPCS | {"Embedding"},
    "vertexai": CHAT_RPCS | {"Embedding"},
    "mistral": CHAT_RPCS,
    "cohere": CHAT_RPCS | {"Embedding", "Reranking"},
    "replicate": CHAT_RPCS,
}


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


class _LazyAdapter:
    """A factory that imports `providers.<name>` the first time a request needs it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._spec: ProviderSpec | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._spec is not None

    def load(self) -> ProviderSpec:
        if self._spec is None:
            with self._lock:
                if self._spec is None:
                    spec: ProviderSpec = importlib.import_module(f"providers.{self.name}").SPEC
                    self._spec = spec
                    gc.freeze()  # the SDK just imported lives as long as the process (server.freeze_heap)
        return self._spec

    def __call__(self, credential: CredentialValue, env: ProviderEnv) -> Provider:
        return self.load().factory(credential, env)


def builtin_spec(name: str) -> ProviderSpec:
    """The spec of a built-in adapter, without importing its SDK yet."""
    return ProviderSpec(name, _LazyAdapter(name), BUILTIN_RPCS[name], f"built-in {name} adapter")


def default_registry() -> ProviderRegistry:
    """The registry of every built-in provider."""
    from providers import simulated

    registry = ProviderRegistry()
    registry.register(simulated.SPEC)
    for name in PROTOCOL_PROVIDERS:
        registry.register(builtin_spec(name))
    return registry


def preload(registry: ProviderRegistry) -> None:
    """Import every lazily registered adapter now (`serve` does before it opens its port, unless told not to)."""
    for spec in registry:
        if isinstance(spec.factory, _LazyAdapter):
            spec.factory.load()


__all__ = ["BUILTIN_RPCS", "PROTOCOL_PROVIDERS", "ProviderRegistry", "builtin_spec", "default_registry"]
