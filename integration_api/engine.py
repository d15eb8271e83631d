"""The streaming engine: one `stream_chat_bidirectional` routine behind every service's StreamChat.

One StreamChat RPC is one `StreamSession`:

- the stream is authenticated once, from its metadata, before any request is read;
- a reader task reads ChatRequests until the client half-closes; each START request becomes a `RequestRun`
  task (concurrent, at most `max_inflight_per_stream` at a time; the rest wait, none is dropped), each CANCEL
  cancels the in-flight request with that id;
- every run puts its frames on one outbox, and only the RPC's own generator writes them (one writer);
- every run ends with exactly one terminal frame: the final frame or one error frame, sent from one place
  (`RequestRun.run`). An error in one request never touches the others or the stream;
- EOF: in-flight requests finish, then the RPC ends OK. The client cancelling or dropping the RPC cancels every
  run, which closes every provider stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from integration_api.errors import AlreadyExists, Cancelled, GatewayError, Internal, Unavailable
from integration_api.frames import ResponseAccumulator, TextFrameEncoder, error_frame, final_frame, tool_call_frame
from integration_api.lifecycle import Lifecycle
from integration_api.outbox import Outbox
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import parse_chat_request
from integration_api.settings import Settings
from providers.base import Provider
from providers.types import ChatFinished, TextDelta, ToolCallDelta

logger = logging.getLogger(__name__)

_END = None  # outbox sentinel: the session has nothing more to send
OUTBOX_SIZE = 1024  # frames buffered per stream before runs wait for the client to read (backpressure)


class ProviderBuilder(Protocol):
    """The provider caller for one request, from its provider name and credential, held for the request's length."""

    def __call__(
        self, provider_name: str, credential: pb.Credential, rpc: str
    ) -> contextlib.AbstractContextManager[Provider]: ...


class RequestRun:
    """One request on a stream, from its ChatRequest to its one terminal frame."""

    def __init__(self, session: StreamSession, request: pb.ChatRequest) -> None:
        self.session = session
        self.request = request
        self.request_id = request.requestId
        self.key = self.request_id or f"\0anonymous-{id(self)}"  # runs without an id still need a slot
        self.cancel_reason: GatewayError | None = None
        self.task: asyncio.Task[None] | None = None

    def cancel(self, reason: GatewayError) -> None:
        """Stop this request; it ends with one error frame for `reason`."""
        if self.task is not None and not self.task.done() and self.cancel_reason is None:
            self.cancel_reason = reason
            self.task.cancel()

    async def run(self) -> None:
        accumulated = ResponseAccumulator()
        try:
            terminal = await self._stream(accumulated)
        except asyncio.CancelledError:
            if self.cancel_reason is None:
                self.session.forget(self)
                raise  # the whole stream is going away: there is no one to send a frame to
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            terminal = error_frame(self.request_id, self.cancel_reason, accumulated)
        except GatewayError as error:
            terminal = error_frame(self.request_id, error, accumulated)
        except Exception as exc:  # a bug in an adapter must not take the stream down
            logger.exception("request %s failed unexpectedly", self.request_id)
            internal = Internal(f"unexpected {type(exc).__name__} while serving the request")
            terminal = error_frame(self.request_id, internal, accumulated)
        try:
            await self.session.send(terminal.SerializeToString())
        finally:
            self.session.forget(self)  # after the terminal frame is queued, so the stream cannot end before it

    async def _stream(self, accumulated: ResponseAccumulator) -> pb.ChatResponse:
        session = self.session
        call = parse_chat_request(self.request)
        name = session.provider_for(self.request)
        async with session.slots:
            with session.provider(name, self.request.credential, "StreamChat") as provider:
                events = provider.stream_chat(call)
                encode_text = TextFrameEncoder(self.request_id)
                try:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            accumulated.add_text(event.text)
                            await session.send(encode_text(event.text))
                        elif isinstance(event, ToolCallDelta):
                            accumulated.add_tool_call(event)
                            await session.send(tool_call_frame(self.request_id, event).SerializeToString())
                        elif isinstance(event, ChatFinished):
                            return final_frame(self.request_id, accumulated, event)
                finally:
                    await events.aclose()  # type: ignore[attr-defined]  # closes the upstream call at once
        raise Internal(f"provider {name!r} ended its stream without finishing the response")


class StreamSession:
    """One StreamChat RPC: its reader, its runs and its outbox."""

    def __init__(
        self,
        provider: ProviderBuilder,
        settings: Settings,
        lifecycle: Lifecycle,
        provider_name: str | None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.lifecycle = lifecycle
        self.provider_name = provider_name
        self.slots = asyncio.Semaphore(settings.max_inflight_per_stream)
        self.runs: dict[str, RequestRun] = {}
        self.outbox: Outbox[bytes | None] = Outbox(OUTBOX_SIZE)
        self._reader_done = False
        self._draining = False
        self._ended = False

    def provider_for(self, request: pb.ChatRequest) -> str:
        if self.provider_name is not None:
            return self.provider_name
        return request.providerName or self.settings.default_provider

    async def send(self, frame: bytes) -> None:
        """Queue an encoded ChatResponse for the writer (waits while the client is behind)."""
        await self.outbox.put(frame)

    def forget(self, run: RequestRun) -> None:
        if self.runs.get(run.key) is run:
            del self.runs[run.key]
        self._maybe_end()

    def _maybe_end(self) -> None:
        """Queue the end of the stream once nothing more can be sent: reader done (or draining), no runs left."""
        if self._ended or not (self._reader_done or self._draining) or self.runs:
            return
        self._ended = True
        self.outbox.put_nowait(_END)

    async def handle(self, request: pb.ChatRequest) -> None:
        """Act on one ChatRequest read from the stream."""
        request_id = request.requestId
        if request.action == pb.REQUEST_ACTION_CANCEL:
            run = self.runs.get(request_id)
            if run is not None:
                run.cancel(Cancelled(f"request {request_id!r} was cancelled by the client"))
            return
        if self._draining:
            error: GatewayError = Unavailable("the server is shutting down; send this request to another instance")
            await self.send(error_frame(request_id, error).SerializeToString())
            return
        if request_id and request_id in self.runs:
            duplicate = AlreadyExists(f"request {request_id!r} is already in flight")
            await self.send(error_frame(request_id, duplicate).SerializeToString())
            return
        run = RequestRun(self, request)
        self.runs[run.key] = run
        run.task = asyncio.ensure_future(run.run())

    async def _read(self, requests: AsyncIterator[pb.ChatRequest]) -> None:
        try:
            async for request in requests:
                await self.handle(request)
        finally:
            self._reader_done = True
            self._maybe_end()

    async def _drain_when_asked(self) -> None:
        await self.lifecycle.wait_draining()
        self._draining = True
        self._maybe_end()
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.lifecycle.grace_s * 0.8)
        for run in list(self.runs.values()):
            run.cancel(Unavailable("the server shut down before this request finished; retry it elsewhere"))

    async def serve(self, requests: AsyncIterator[pb.ChatRequest], write: Callable[[bytes], Awaitable[None]]) -> None:
        """Run the stream: read and run requests in background tasks; write their encoded frames here, in order."""
        reader = asyncio.ensure_future(self._read(requests))
        drainer = asyncio.ensure_future(self._drain_when_asked())
        try:
            while (frame := await self.outbox.get()) is not _END:
                await write(frame)
            if reader.done() and not reader.cancelled() and (error := reader.exception()) is not None:
                raise error
        finally:
            reader.cancel()
            drainer.cancel()
            runs = [run.task for run in self.runs.values() if run.task is not None]
            for task in runs:
                task.cancel()
            if runs:
                await asyncio.gather(*runs, return_exceptions=True)
