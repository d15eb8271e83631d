"""The server keeps its long-lived heap (modules, SDKs) out of the garbage collector's full passes."""

from __future__ import annotations

import gc

from integration_api.server import freeze_heap


def test_after_freezing_a_full_collection_walks_only_what_came_after() -> None:
    import providers.openai  # noqa: F401  # an SDK's worth of long-lived objects

    gc.unfreeze()  # measure this freeze alone, whatever earlier tests froze
    try:
        freeze_heap()
        assert gc.get_freeze_count() > 50_000
        assert len(gc.get_objects()) < gc.get_freeze_count() // 10  # what a full pass still walks
    finally:
        gc.unfreeze()
