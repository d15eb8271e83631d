"""A provider for tests that records what happened to its calls (registered like any third-party provider)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from providers.base import ALL_RPCS, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.simulated import SimulatedProvider
from providers.types import ChatCall, ChatEvent


@dataclass
class ProbeLog:
    started: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # the provider stream was closed before it finished
    finished: list[str] = field(default_factory=list)
    credentials: list[CredentialValue] = field(default_factory=list)
    active: int = 0
    peak_active: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate: object, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


class ProbeProvider(Provider):
    """The simulated provider, observed: which calls started, finished, or were closed early."""

    name = "probe"

    def __init__(self, log: ProbeLog, credential: CredentialValue) -> None:
        self._log = log
        self._inner = SimulatedProvider(credential)
        log.credentials.append(credential)

    async def stream_chat(self, call: ChatCall) -> AsyncIterator[ChatEvent]:  # type: ignore[override]
        log = self._log
        log.started.append(call.request_id)
        log.active += 1
        log.peak_active = max(log.peak_active, log.active)
        log.changed.set()
        completed = False
        try:
            async for event in self._inner.stream_chat(call):
                yield event
            completed = True
        finally:
            log.active -= 1
            (log.finished if completed else log.closed).append(call.request_id)
            log.changed.set()


def probe_spec(log: ProbeLog) -> ProviderSpec:
    def factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
        return ProbeProvider(log, credential)

    return ProviderSpec("probe", factory, ALL_RPCS, "simulated, observed by the tests")
