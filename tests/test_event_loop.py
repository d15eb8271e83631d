"""The process's event loop runner: uvloop when installed, asyncio's otherwise, and errors of the coroutine intact."""

from __future__ import annotations

import sys

import pytest

from integration_api.event_loop import run_event_loop


async def needs_a_missing_module() -> None:
    raise ImportError("No module named 'some_vendor_sdk'")


async def answer() -> int:
    return 42


def test_an_import_error_raised_by_the_coroutine_propagates() -> None:
    with pytest.raises(ImportError, match="some_vendor_sdk"):
        run_event_loop(needs_a_missing_module())


def test_without_uvloop_asyncio_runs_the_coroutine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` sees when it is not installed
    assert run_event_loop(answer()) == 42
    with pytest.raises(ImportError, match="some_vendor_sdk"):
        run_event_loop(needs_a_missing_module())
