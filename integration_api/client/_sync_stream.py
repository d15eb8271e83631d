"""`ChatStream` and `ChatResponse`: the synchronous twins of `AsyncChatStream` and `AsyncChatResponse`.

Each wraps its async twin, which lives on the client's private event loop thread (``_loop``); every method hands
the work to that loop and waits. Leaving an iteration early (``break``, an exception, ``with`` exit) or calling
`cancel()` sends the protocol's CANCEL, exactly as in the async API.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from integration_api.client._credentials import Credential
from integration_api.client._errors import StreamClosedError
from integration_api.client._loop import LoopThread
from integration_api.client._requests import Parameters
from integration_api.client._response import AsyncChatResponse
from integration_api.client._stream import AsyncChatStream
from integration_api.client._types import ChatEvent, ChatResult, MessageParam, TextDelta, ToolParam

T = TypeVar("T")


async def _call(function: Callable[[], T]) -> T:
    return function()


async def _next(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None


class ChatResponse:
    """The response to one chat request on a `ChatStream`.

    ``for event in response`` yields `TextDelta`, `ToolCallDelta` and, last, the `ChatResult`; a failed request
    raises its `APIError`. `result()` / `text()` wait for the end; `text_stream` yields only the text.
    """

    def __init__(self, loop: LoopThread, inner: AsyncChatResponse) -> None:
        self._loop = loop
        self._inner = inner

    @property
    def request_id(self) -> str:
        return self._inner.request_id

    @property
    def done(self) -> bool:
        return self._inner.done

    def cancel(self) -> None:
        """Ask the server to stop this request; it then ends with `RequestCancelledError`."""
        self._loop.call_soon(self._inner.cancel)

    def __iter__(self) -> Iterator[ChatEvent]:
        events = aiter(self._inner)
        try:
            while True:
                more, event = self._loop.run(_next(events))
                if not more or event is None:
                    return
                yield event
        finally:
            with contextlib.suppress(StreamClosedError):  # the client was closed meanwhile: nothing to cancel
                self._loop.run(events.aclose())  # type: ignore[attr-defined]  # an async generator

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the text deltas, as strings."""
        return (event.text for event in self if isinstance(event, TextDelta))

    def result(self) -> ChatResult:
        """Wait for the end of the response and return its `ChatResult` (or raise its error)."""
        return self._loop.run(self._inner.result())

    def text(self) -> str:
        """Wait for the end of the response and return its whole text."""
        return self.result().text

    def __enter__(self) -> ChatResponse:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"<ChatResponse {self.request_id!r} {'done' if self.done else 'in flight'}>"


class ChatStream:
    """One StreamChat call shared by many concurrent requests (from one thread or several): ``with`` it."""

    def __init__(self, loop: LoopThread, inner: AsyncChatStream) -> None:
        self._loop = loop
        self._inner = inner

    @property
    def provider(self) -> str | None:
        return self._inner.provider

    @property
    def in_flight(self) -> int:
        return self._inner.in_flight

    def chat(
        self,
        messages: Iterable[MessageParam],
        *,
        model: str | None = None,
        credential: Credential | None = None,
        tools: Iterable[ToolParam] | None = None,
        parameters: Parameters | None = None,
        request_id: str | None = None,
        session_id: str | None = None,
    ) -> ChatResponse:
        """Send one request on this stream now; returns its response (an iterator of events)."""
        messages = list(messages)

        def send() -> AsyncChatResponse:
            return self._inner.chat(
                messages,
                model=model,
                credential=credential,
                tools=tools,
                parameters=parameters,
                request_id=request_id,
                session_id=session_id,
            )

        return ChatResponse(self._loop, self._loop.run(_call(send)))

    def ping(self, within: float = 5.0) -> float:
        """Send a PING on the stream and wait for the PONG; returns the round trip in seconds."""
        return float(self._loop.run(self._inner.ping(within)))

    def close(self) -> None:
        """Close the call; requests still in flight fail with `StreamClosedError`. Idempotent."""
        self._loop.run(self._inner.aclose())

    def __enter__(self) -> ChatStream:
        self._loop.run(self._inner.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ChatStream provider={self.provider!r} in_flight={self.in_flight}>"
