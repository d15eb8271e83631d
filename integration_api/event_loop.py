"""Running a process's main coroutine: on uvloop when it is installed (the `server` extra ships it), else asyncio's.

The import is tried on its own, before anything runs: wrapping the run itself in ``except ImportError`` would also
catch an ImportError raised by the coroutine (a missing SDK, say) and retry an already awaited coroutine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop and return its result; its exceptions propagate unchanged."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
