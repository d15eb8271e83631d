"""The server's lifecycle as the engine sees it: serving, or draining before shutdown."""

from __future__ import annotations

import asyncio


class Lifecycle:
    """Set `drain()` on SIGTERM: new streams are refused, open streams finish their in-flight requests within
    `grace_s` (the rest end with one UNAVAILABLE error frame) and then end."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._draining = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self) -> None:
        self._draining.set()

    async def wait_draining(self) -> None:
        await self._draining.wait()
