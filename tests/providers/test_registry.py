"""The registry: built-in adapters load lazily and declare the same RPCs as their modules."""

from __future__ import annotations

import importlib

import pytest

from integration_api.errors import InvalidArgument, Unimplemented
from providers.registry import BUILTIN_RPCS, ProviderRegistry, _LazyAdapter, default_registry, preload


@pytest.mark.parametrize("name", sorted(BUILTIN_RPCS))
def test_builtin_table_matches_each_adapter(name: str) -> None:
    module = importlib.import_module(f"providers.{name}")
    assert module.SPEC.name == name
    assert module.SPEC.rpcs == BUILTIN_RPCS[name]


def test_unknown_and_disabled_providers() -> None:
    registry = default_registry()
    assert {spec.name for spec in registry} == {"simulated", *BUILTIN_RPCS}
    with pytest.raises(InvalidArgument, match="unknown provider 'nope'"):
        registry.get("nope")
    with pytest.raises(Unimplemented, match="not enabled"):
        ProviderRegistry().get("openai")


def test_preloading_loads_every_builtin_adapter() -> None:
    registry = default_registry()
    lazy = [spec.factory for spec in registry if isinstance(spec.factory, _LazyAdapter)]
    assert len(lazy) == len(BUILTIN_RPCS)
    assert not any(adapter.loaded for adapter in lazy)
    preload(registry)
    assert all(adapter.loaded for adapter in lazy)
