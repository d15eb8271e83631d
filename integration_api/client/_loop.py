"""A private asyncio event loop on a daemon thread, so the synchronous client can drive the async one.

`run()` submits a coroutine to the loop and blocks the calling thread until it finishes; it is safe to call from
any number of threads at once. Interrupting the wait (e.g. Ctrl-C) cancels the coroutine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from integration_api.client._errors import StreamClosedError

T = TypeVar("T")
_JOIN_TIMEOUT_S = 5.0


class LoopThread:
    """An event loop running forever on its own daemon thread until `close()`."""

    def __init__(self, name: str = "integration-api-client") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for its result (or exception)."""
        if self._closed:
            coroutine.close()
            raise StreamClosedError("this client is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("the synchronous client cannot be called from its own event loop thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # no-op when it already finished; stops it when the wait was interrupted
            raise

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop soon, without waiting for it."""
        if not self._closed:
            self._loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        """Finish async generators, stop the loop and its thread. Idempotent."""
        if self._closed:
            return
        self.run(self._loop.shutdown_asyncgens())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
