"""The registry: built-in adapters are the vendor table's, load lazily and declare what the table says."""

from __future__ import annotations

import importlib
import threading

import pytest

from integration_api.errors import InvalidArgument, Unimplemented
from providers.registry import ProviderRegistry, _LazyAdapter, builtin_spec, default_registry, preload
from providers.vendors import VENDOR_NAMES, VENDORS, Vendor


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_NAMES)
def test_builtin_table_matches_each_adapter(vendor: Vendor) -> None:
    module = importlib.import_module(vendor.adapter_module)
    assert module.SPEC.name == vendor.name
    assert module.SPEC.rpcs == vendor.rpcs
    assert module.SPEC.description == vendor.description


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_NAMES)
def test_a_builtin_spec_declares_the_table_entry_without_loading(vendor: Vendor) -> None:
    spec = builtin_spec(vendor.name)
    assert (spec.name, spec.rpcs, spec.description) == (vendor.name, vendor.rpcs, vendor.description)
    assert isinstance(spec.factory, _LazyAdapter) and not spec.factory.loaded


def test_unknown_and_disabled_providers() -> None:
    registry = default_registry()
    assert {spec.name for spec in registry} == {"simulated", *VENDOR_NAMES}
    with pytest.raises(InvalidArgument, match="unknown provider 'nope'"):
        registry.get("nope")
    for name in VENDOR_NAMES:
        with pytest.raises(Unimplemented, match="not enabled"):
            ProviderRegistry().get(name)


def test_preloading_loads_every_builtin_adapter() -> None:
    registry = default_registry()
    lazy = [spec.factory for spec in registry if isinstance(spec.factory, _LazyAdapter)]
    assert len(lazy) == len(VENDORS)
    assert not any(adapter.loaded for adapter in lazy)
    preload(registry)
    assert all(adapter.loaded for adapter in lazy)


def test_each_lazy_load_is_reported_once_to_every_hook() -> None:
    registry = default_registry()
    first: list[str] = []
    second: list[str] = []
    registry.on_load(first.append)
    registry.on_load(second.append)
    registry.get("openai").factory.load()  # type: ignore[attr-defined]
    registry.get("openai").factory.load()  # type: ignore[attr-defined]
    assert first == second == ["openai"]
    preload(registry)
    assert sorted(first) == sorted(second) == sorted(VENDOR_NAMES)


def test_threads_racing_to_load_an_adapter_report_it_once() -> None:
    registry = default_registry()
    seen: list[str] = []
    registry.on_load(seen.append)
    adapter = registry.get("anthropic").factory
    assert isinstance(adapter, _LazyAdapter)
    barrier = threading.Barrier(8)
    specs = []

    def load() -> None:
        barrier.wait()
        specs.append(adapter.load())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["anthropic"]
    assert len(specs) == 8 and all(spec is specs[0] for spec in specs)
