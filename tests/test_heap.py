"""The server keeps its long-lived heap (modules, SDKs) out of the garbage collector's full passes.

Freezing is the server's decision, made in one place (`server.freeze_heap`): at start-up, and after an adapter's
SDK is imported on first use, which the registry reports through its `on_load` hook; the registry freezes nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from integration_api.server import freeze_heap
from providers.registry import default_registry, preload
from tests.conftest import make_settings, start_gateway
from tests.grpc_helpers import chat_request, credential


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()  # measure this test's freezes alone, whatever earlier tests froze
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_after_freezing_a_full_collection_walks_only_what_came_after() -> None:
    import providers.openai  # noqa: F401  # an SDK's worth of long-lived objects

    freeze_heap()
    assert gc.get_freeze_count() > 50_000
    assert len(gc.get_objects()) < gc.get_freeze_count() // 10  # what a full pass still walks


@pytest.mark.usefixtures("unfrozen")
def test_the_registry_loading_adapters_freezes_nothing() -> None:
    registry = default_registry()
    preload(registry)
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("unfrozen")
async def test_an_adapter_the_server_loads_on_first_use_ends_up_frozen(tmp_path: Path) -> None:
    gateway = await start_gateway(make_settings(tmp_path, preload_providers=False))
    try:
        assert gc.get_freeze_count() == 0
        request = chat_request("first-use", provider="openai", cred=credential())  # no key: refused after loading
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway.unified.Chat(request, metadata=gateway.metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert gc.get_freeze_count() > 50_000  # the SDK with the rest of the long-lived heap
    finally:
        await gateway.channel.close()
        await gateway.server.stop()
