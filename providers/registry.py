"""The registry from provider name to `ProviderSpec`.

Built-in providers register through the same `register` call a third party would use; the server builds one
registry at start-up (`default_registry`) and passes it down. The built-in vendors are those of the vendor table
(`providers.vendors`); their adapters are imported on first use: their SDKs take seconds to import, and a server
that never calls a vendor should not pay for it. Whoever owns the process (the server) learns of each such import
through `on_load`, and decides what to do about it (freeze the heap); the registry itself changes no process state.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator

from integration_api.errors import InvalidArgument, Unimplemented
from providers.base import CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.vendors import VENDOR_NAMES, VENDORS, Vendor, vendor

# Every provider name the protocol knows, whether or not an adapter for it is enabled in this build.
PROTOCOL_PROVIDERS = VENDOR_NAMES

# The RPCs each built-in adapter serves (its module's `SPEC.rpcs` must match: a test checks).
BUILTIN_RPCS: dict[str, frozenset[str]] = {v.name: v.rpcs for v in VENDORS}

# Called with the provider name after a lazily registered adapter has imported its module (and SDK).
LoadHook = Callable[[str], None]


class ProviderRegistry:
    """Provider specs by name. Lookups of unknown names fail with a message listing the enabled ones."""

    def __init__(self) -> None:
        self._specs: dict[str, ProviderSpec] = {}
        self._load_hooks: list[LoadHook] = []

    def register(self, spec: ProviderSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"provider {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        if isinstance(spec.factory, _LazyAdapter):
            spec.factory.notify.append(self._loaded)

    def on_load(self, hook: LoadHook) -> None:
        """Call `hook(name)` each time one of this registry's lazy adapters imports its module, after the import.

        It runs on the thread that needed the adapter (with `preload`, the caller's; otherwise that of the first
        request, usually the event loop), once per adapter.
        """
        self._load_hooks.append(hook)

    def _loaded(self, name: str) -> None:
        for hook in self._load_hooks:
            hook(name)

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
    """A factory that imports the vendor's adapter module the first time a request needs it."""

    def __init__(self, vendor: Vendor) -> None:
        self.vendor = vendor
        self.notify: list[LoadHook] = []  # the `_loaded` of each registry holding this adapter
        self._spec: ProviderSpec | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.vendor.name

    @property
    def loaded(self) -> bool:
        return self._spec is not None

    def load(self) -> ProviderSpec:
        if self._spec is not None:
            return self._spec
        with self._lock:
            imported = self._spec is None  # False: another thread imported it while this one waited for the lock
            if self._spec is None:
                loaded: ProviderSpec = importlib.import_module(self.vendor.adapter_module).SPEC
                self._spec = loaded
            spec = self._spec
        if imported:
            # Outside the lock: a hook may take a while (a collection), and other threads need only the spec.
            for notify in self.notify:
                notify(self.name)
        return spec

    def __call__(self, credential: CredentialValue, env: ProviderEnv) -> Provider:
        return self.load().factory(credential, env)


def builtin_spec(name: str) -> ProviderSpec:
    """The spec of a built-in adapter, without importing its SDK yet."""
    entry = vendor(name)
    return ProviderSpec(name, _LazyAdapter(entry), entry.rpcs, entry.description)


def default_registry() -> ProviderRegistry:
    """The registry of every built-in provider: the simulated one and each vendor of the table."""
    from providers import simulated

    registry = ProviderRegistry()
    registry.register(simulated.SPEC)
    for name in VENDOR_NAMES:
        registry.register(builtin_spec(name))
    return registry


def preload(registry: ProviderRegistry) -> None:
    """Import every lazily registered adapter now (`serve` does before it opens its port, unless told not to)."""
    for spec in registry:
        if isinstance(spec.factory, _LazyAdapter):
            spec.factory.load()


__all__ = [
    "BUILTIN_RPCS",
    "PROTOCOL_PROVIDERS",
    "LoadHook",
    "ProviderRegistry",
    "builtin_spec",
    "default_registry",
    "preload",
]
