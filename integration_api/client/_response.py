"""`AsyncChatResponse`: the response to one request on a stream, as an async iterator of typed events.

The stream routes the frames of this request (by requestId) into `RequestState.queue`; this object turns them
into events. Leaving the iteration early (``break``, an exception, task cancellation, ``async with`` exit) or
calling `cancel()` sends the protocol's CANCEL for the request; the server then ends it with a CANCELLED error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType

from integration_api.client._errors import APIError, IntegrationAPIError, StreamClosedError
from integration_api.client._results import events_from_frame
from integration_api.client._types import ChatEvent, ChatResult, TextDelta
from integration_api.proto import integration_api_pb2 as pb

QueueItem = pb.ChatResponse | IntegrationAPIError


@dataclass(eq=False)
class RequestState:
    """The stream's bookkeeping for one request: its frames so far, and what has happened to it."""

    request: pb.ChatRequest
    queue: asyncio.Queue[QueueItem] = field(default_factory=asyncio.Queue)
    produced_output: bool = False  # a frame of it was received: it must never be re-sent
    done: bool = False  # its last item (terminal frame or error) is queued
    cancel_requested: bool = False
    refusals: int = 0  # times a server going away refused it before it ran (and the stream resent it)

    @property
    def request_id(self) -> str:
        return self.request.requestId

    def put(self, frame: pb.ChatResponse) -> None:
        self.produced_output = True
        self.queue.put_nowait(frame)

    def finish(self, item: QueueItem) -> None:
        """Queue the last item of this request (once)."""
        if not self.done:
            self.done = True
            self.queue.put_nowait(item)


class AsyncChatResponse:
    """The response to one chat request on a stream.

    ``async for event in response`` yields `TextDelta`, `ToolCallDelta` and, last, the `ChatResult`; a failed
    request raises its `APIError` instead. ``await response.result()`` / ``await response.text()`` wait for the
    end; `text_stream` yields only the text. Iterate it once.
    """

    def __init__(self, state: RequestState, cancel: Callable[[RequestState], None]) -> None:
        self._state = state
        self._send_cancel = cancel
        self._result: ChatResult | None = None
        self._error: IntegrationAPIError | None = None

    @property
    def request_id(self) -> str:
        return self._state.request_id

    @property
    def done(self) -> bool:
        """Whether the response has been read to its end (result or error)."""
        return self._result is not None or self._error is not None

    def cancel(self) -> None:
        """Ask the server to stop this request (no-op once it has ended); it then ends with `RequestCancelledError`."""
        if not self.done:
            self._send_cancel(self._state)

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ChatEvent]:
        try:
            while self._result is None:
                if self._error is not None:
                    raise self._error
                for event in self._consume(await self._state.queue.get()):
                    yield event
        finally:
            self.cancel()  # left early: the server stops working on it

    def _consume(self, item: QueueItem) -> list[ChatEvent]:
        if isinstance(item, IntegrationAPIError):
            self._error = item
            raise item
        try:
            events = events_from_frame(item)
        except APIError as error:
            self._error = error
            raise
        for event in events:
            if isinstance(event, ChatResult):
                self._result = event
        return events

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """Only the text deltas, as strings."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        try:
            async for event in self._events():
                if isinstance(event, TextDelta):
                    yield event.text
        finally:
            self.cancel()

    async def result(self) -> ChatResult:
        """Wait for the end of the response and return its `ChatResult` (or raise its error)."""
        async for _ in self._events():
            pass
        if self._result is None:  # pragma: no cover - the loop above ends only with a result or an exception
            raise StreamClosedError(f"request {self.request_id!r} ended without a result")
        return self._result

    async def text(self) -> str:
        """Wait for the end of the response and return its whole text."""
        return (await self.result()).text

    async def __aenter__(self) -> AsyncChatResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "done" if self.done else "in flight"
        return f"<AsyncChatResponse {self.request_id!r} {state}>"
