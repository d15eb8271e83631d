"""Retries and timeouts, as a pipeline layer around any provider (adapters do neither themselves).

`ResilientProvider` is the innermost layer of ``integration_api.pipeline``, wrapping the adapter:

- **retries** (tenacity) only before the first event has been received, only for retryable errors
  (`GatewayError.retryable`), with exponential backoff and jitter, honouring the upstream's retry-after up to
  the backoff cap, bounded in attempts and in total time. Once an event has been produced nothing is retried,
  so a client can never receive a token twice;
- **time to first event** and **idle gap between events**: exceeding either closes the upstream stream and
  raises DeadlineExceeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from integration_api.errors import DeadlineExceeded, GatewayError
from integration_api.settings import Settings
from providers.base import ChatStream, Provider, ProviderLayer
from providers.types import (
    ChatCall,
    ChatEvent,
    Usage,
)

if TYPE_CHECKING:
    from integration_api.context import RequestContext

T = TypeVar("T")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, GatewayError) and exc.retryable


class _RetryAfterOrBackoff:
    """Wait what the upstream asked for (capped), else exponential backoff with jitter."""

    def __init__(self, settings: Settings) -> None:
        self._cap = settings.retry_max_backoff_s
        self._backoff = wait_exponential_jitter(initial=settings.retry_initial_backoff_s, max=self._cap)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, GatewayError) and error.retry_after is not None:
            return min(error.retry_after, self._cap)
        return float(self._backoff(state))


class _IdleWatchdog:
    """Cancels `task` when no upstream event arrived for `idle_s`, while not paused.

    One timer per request instead of one per event: `touch()` only moves a deadline, and the timer re-arms
    itself until the deadline really passes. It is paused while the consumer holds an event (a slow client
    is backpressure, not an idle upstream).
    """

    def __init__(self, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._idle_s = idle_s
        self.deadline = self._loop.time() + idle_s
        self.paused = False
        self.fired = False
        self._handle = self._loop.call_at(self.deadline, self._check)

    def touch(self) -> None:
        self.deadline = self._loop.time() + self._idle_s

    def _check(self) -> None:
        now = self._loop.time()
        if self.paused or now < self.deadline:
            self._handle = self._loop.call_at(max(self.deadline, now + 0.001), self._check)
            return
        self.fired = True
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()


class ResilientProvider(ProviderLayer):
    """`inner` with the server's retry and timeout policy applied."""

    def __init__(self, inner: Provider, context: RequestContext, settings: Settings) -> None:
        super().__init__(inner, context)
        self._settings = settings

    def _retrying(self) -> AsyncRetrying:
        settings = self._settings
        return AsyncRetrying(
            stop=stop_after_attempt(settings.retry_max_attempts) | stop_after_delay(settings.retry_max_total_s),
            wait=_RetryAfterOrBackoff(settings),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )

    async def _open(self, call: ChatCall) -> tuple[AsyncIterator[ChatEvent], ChatEvent]:
        """Start the inner stream and wait for its first event (within the first-token timeout)."""
        self.context.stats.attempts += 1
        events = aiter(self.inner.stream_chat(call))
        try:
            async with asyncio.timeout(self._settings.first_token_timeout_s):
                first = await anext(events)
        except TimeoutError as exc:
            await _close(events)
            raise DeadlineExceeded(
                f"no output from {self.name!r} within {self._settings.first_token_timeout_s:g} s"
            ) from exc
        except BaseException:
            await _close(events)
            raise
        return events, first

    async def _open_with_retries(self, call: ChatCall) -> tuple[AsyncIterator[ChatEvent], ChatEvent]:
        """The first attempt runs bare (the common case costs nothing); tenacity takes over only after a failure."""
        try:
            return await self._open(call)
        except GatewayError as error:
            if not error.retryable or self._settings.retry_max_attempts <= 1:
                raise
            first_error = error
        # Replay the failure as tenacity's first attempt, so its stop, wait and retry policies see every attempt.
        replay: list[GatewayError] = [first_error]
        opened: tuple[AsyncIterator[ChatEvent], ChatEvent] | None = None
        async for attempt in self._retrying():
            with attempt:
                if replay:
                    raise replay.pop()
                opened = await self._open(call)
        assert opened is not None
        return opened

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        events, first = await self._open_with_retries(call)
        watchdog = _IdleWatchdog(self._settings.idle_timeout_s)
        try:
            watchdog.paused = True
            yield first
            watchdog.paused = False
            async for event in events:
                watchdog.touch()
                watchdog.paused = True
                yield event
                watchdog.paused = False
        except asyncio.CancelledError:
            if not watchdog.fired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            idle = self._settings.idle_timeout_s
            raise DeadlineExceeded(f"{self.name!r} sent nothing for {idle:g} s mid-response") from None
        finally:
            watchdog.stop()
            await _close(events)

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        async for attempt in self._retrying():
            with attempt:
                self.context.stats.attempts += 1
                try:
                    async with asyncio.timeout(self._settings.first_token_timeout_s):
                        return await operation()
                except TimeoutError as exc:
                    raise DeadlineExceeded(f"{self.name!r} did not answer in time") from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")


async def _close(events: AsyncIterator[ChatEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
