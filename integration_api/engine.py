"""The streaming engine: one `StreamSession` behind every service's StreamChat, and the chat loop unary Chat shares.

One StreamChat RPC is one `StreamSession`:

- the stream is authenticated once, from its metadata, before any request is read (``Gateway``); the principal
  is re-validated for each new request (revocation, expiry), and a stream whose credential stopped being valid
  ends with UNAUTHENTICATED after every request got its terminal frame;
- a reader task reads raw ChatRequest messages until the client half-closes and decodes each one itself, so an
  undecodable message is one request's INVALID_ARGUMENT error frame, not the end of the stream;
- each START request becomes a `RequestRun` task (at most `max_inflight_per_stream` at a time; the rest wait in
  a queue bounded per stream and per principal, beyond which a request is refused with RESOURCE_EXHAUSTED),
  each CANCEL cancels the in-flight request with that id;
- every run puts its frames on one outbox, and only the RPC's own generator writes them (one writer); no frame
  is ever larger than the message size limit (long deltas are split);
- every run ends with exactly one terminal frame: the final frame or one error frame, sent from one place
  (`RequestRun.run`). An error in one request never touches the others or the stream;
- EOF: in-flight requests finish, then the RPC ends OK. The client cancelling or dropping the RPC cancels every
  run, which closes every provider stream.

`complete_chat` is the loop from a provider's events to a request's final frame; StreamChat and unary Chat both
run through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

from auth.principal import Principal
from integration_api import access_log
from integration_api.context import RequestContext, StreamContext
from integration_api.errors import (
    AlreadyExists,
    Cancelled,
    GatewayError,
    Internal,
    ResourceExhausted,
    ResponseTooLarge,
    Unauthenticated,
    Unavailable,
)
from integration_api.frames import (
    ResponseAccumulator,
    TextFrameEncoder,
    duplicate_refusal_frame,
    error_frame,
    final_frame,
    pong_frame,
    refusal_frame,
    tool_call_frame,
)
from integration_api.lifecycle import Lifecycle
from integration_api.outbox import Outbox
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import UndecodableRequest, credential_value, decode_chat_request, parse_chat_request
from integration_api.settings import Settings
from providers.base import CredentialValue, Provider
from providers.types import ChatCall, ChatFinished, TextDelta, ToolCallDelta

logger = logging.getLogger(__name__)

_END = None  # outbox sentinel: the session has nothing more to send
OUTBOX_SIZE = 1024  # frames buffered per stream before runs wait for the client to read (backpressure)
LENGTH_PREFIXES_BYTES = 16  # the varint lengths a delta adds to an empty delta frame: at most 3 x 5 bytes
QUEUE_FULL_RETRY_AFTER_S = 1.0
DRAIN_LINGER_S = 1.0  # a drained stream waits at most this long for its client to half-close (_maybe_end)


class ProviderBuilder(Protocol):
    """The provider caller for one request, from its context and credential, held for the request's length."""

    def __call__(
        self, context: RequestContext, credential: CredentialValue
    ) -> contextlib.AbstractContextManager[Provider]: ...


class FrameSink(Protocol):
    """Where `complete_chat` sends a request's delta frames (a stream's outbox; nowhere for unary Chat)."""

    async def text(self, text: str) -> None: ...

    async def tool_call(self, delta: ToolCallDelta) -> None: ...


class NoFrames:
    """The sink of unary Chat: deltas are only accumulated into the final frame."""

    async def text(self, text: str) -> None:
        pass

    async def tool_call(self, delta: ToolCallDelta) -> None:
        pass


async def complete_chat(
    provider: Provider, call: ChatCall, accumulated: ResponseAccumulator, frames: FrameSink
) -> pb.ChatResponse:
    """Drive one chat through `provider`: deltas to `frames` as they arrive, then the request's final frame."""
    events = provider.stream_chat(call)
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                accumulated.add_text(event.text)
                await frames.text(event.text)
            elif isinstance(event, ToolCallDelta):
                accumulated.add_tool_call(event)
                await frames.tool_call(event)
            elif isinstance(event, ChatFinished):
                if accumulated.overflowed:
                    raise ResponseTooLarge(
                        f"the reply ({accumulated.size} characters) is larger than the {accumulated.limit}-byte"
                        " message limit, so no final frame can carry it; its deltas carried all of it"
                    )
                final = final_frame(call.request_id, accumulated, event)
                # Ask for one more event: the stream ends here, and its layers see it ran to its end (the session
                # layer keeps a turn only then; a failed or abandoned request leaves no trace).
                async for _ in events:
                    pass
                return final
    finally:
        await events.aclose()  # closes the upstream call at once
    raise Internal(f"provider {provider.name!r} ended its stream without finishing the response")


def split_utf8(text: str, max_bytes: int) -> Iterator[str]:
    """`text` in pieces of at most `max_bytes` UTF-8 bytes each (at least 4: one character), never cutting one."""
    if max_bytes < 4:
        raise ValueError(f"pieces of {max_bytes} bytes cannot hold every character")
    encoded = text.encode()
    start = 0
    while start < len(encoded):
        end = min(start + max_bytes, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:  # a continuation byte: back up to a boundary
            end -= 1
        yield encoded[start:end].decode()
        start = end


class _StreamFrames:
    """The delta frames of one request on a stream, encoded and split to fit the message size limit."""

    __slots__ = ("_encode_text", "_limit", "_request_id", "_send")

    def __init__(self, session: StreamSession, request_id: str) -> None:
        self._send = session.send
        self._request_id = request_id
        self._encode_text = TextFrameEncoder(request_id)
        self._limit = session.settings.max_message_bytes

    async def text(self, text: str) -> None:
        frame = self._encode_text(text)
        if len(frame) <= self._limit:
            await self._send(frame)
            return
        budget = self._limit - len(self._encode_text("")) - LENGTH_PREFIXES_BYTES
        for piece in split_utf8(text, budget):
            await self._send(self._encode_text(piece))

    async def tool_call(self, delta: ToolCallDelta) -> None:
        frame = tool_call_frame(self._request_id, delta).SerializeToString()
        if len(frame) <= self._limit:
            await self._send(frame)
            return
        # The call's id and name go with its first piece only, as with any streamed tool call.
        head = ToolCallDelta(delta.index, delta.id, delta.name)
        budget = self._limit - len(tool_call_frame(self._request_id, head).SerializeToString()) - LENGTH_PREFIXES_BYTES
        if budget < 4:
            raise ResponseTooLarge("a tool call's id and name alone do not fit in one message")
        for number, piece in enumerate(split_utf8(delta.arguments, budget)):
            part = (
                ToolCallDelta(delta.index, delta.id, delta.name, piece)
                if number == 0
                else ToolCallDelta(delta.index, arguments=piece)
            )
            await self._send(tool_call_frame(self._request_id, part).SerializeToString())


class RequestRun:
    """One request on a stream, from its ChatRequest to its one terminal frame."""

    def __init__(self, session: StreamSession, request: pb.ChatRequest, size: int) -> None:
        self.session = session
        self.request = request
        self.request_id = request.requestId
        self.size = size
        self.key = self.request_id or f"\0anonymous-{id(self)}"  # runs without an id still need a slot
        self.cancel_reason: GatewayError | None = None
        self.task: asyncio.Task[None] | None = None
        self.context: RequestContext | None = None
        self.queued = True  # waiting for a slot (counted against the queue bounds)

    def cancel(self, reason: GatewayError) -> None:
        """Stop this request; it ends with one error frame for `reason`."""
        if self.task is not None and not self.task.done() and self.cancel_reason is None:
            self.cancel_reason = reason
            self.task.cancel()

    async def run(self) -> None:
        accumulated = ResponseAccumulator(limit=self.session.settings.max_message_bytes)
        try:
            terminal = await self._stream(accumulated)
        except asyncio.CancelledError:
            if self.cancel_reason is None:
                self.session.forget(self)
                access_log.record(self._log_context(), "CANCELLED", Cancelled.http_status, accumulated.first_output_ns)
                raise  # the whole stream is going away: there is no one to send a frame to
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            terminal = error_frame(self.request_id, self.cancel_reason, accumulated)
        except GatewayError as error:
            terminal = error_frame(self.request_id, error, accumulated)
        except Exception as exc:  # a bug in an adapter must not take the stream down
            logger.exception("request %s failed unexpectedly (peer %s)", self.request_id, self.session.stream.peer)
            internal = Internal(f"unexpected {type(exc).__name__} while serving the request")
            terminal = error_frame(self.request_id, internal, accumulated)
        encoded = terminal.SerializeToString()
        if len(encoded) > self.session.settings.max_message_bytes:
            too_large = ResponseTooLarge(
                f"the reply's accumulated message ({len(encoded)} bytes) is larger than the"
                f" {self.session.settings.max_message_bytes}-byte message limit; its deltas carried all of it"
            )
            terminal = error_frame(self.request_id, too_large, accumulated)
            encoded = terminal.SerializeToString()
        try:
            await self.session.send(encoded)
        finally:
            self.session.forget(self)  # after the terminal frame is queued, so the stream cannot end before it
        status = "OK" if terminal.success else terminal.error.status
        access_log.record(self._log_context(), status, terminal.code, accumulated.first_output_ns)

    def _log_context(self) -> RequestContext:
        if self.context is not None:
            return self.context
        return RequestContext(
            self.session.stream, "StreamChat", self.session.provider_for(self.request), self.request_id
        )

    async def _stream(self, accumulated: ResponseAccumulator) -> pb.ChatResponse:
        session = self.session
        call = parse_chat_request(self.request)
        self.context = RequestContext(
            session.stream,
            "StreamChat",
            session.provider_for(self.request),
            self.request_id,
            call.model,
            started_ns=accumulated.started_ns,
            session_id=self.request.sessionId,
        )
        try:
            await session.slots.acquire()
        finally:
            session.dequeue(self)
        try:
            with session.provider(self.context, credential_value(self.request.credential)) as provider:
                return await complete_chat(provider, call, accumulated, _StreamFrames(session, self.request_id))
        finally:
            session.slots.release()


def _frame_size(frame: bytes | None) -> int:
    return 0 if frame is None else len(frame)


class QueuedRequests:
    """Requests waiting for a slot, counted per principal across every stream of the server."""

    def __init__(self, limit_per_principal: int) -> None:
        self.limit = limit_per_principal
        self._counts: dict[Principal, int] = {}

    def try_add(self, principal: Principal) -> bool:
        count = self._counts.get(principal, 0)
        if count >= self.limit:
            return False
        self._counts[principal] = count + 1
        return True

    def remove(self, principal: Principal) -> None:
        count = self._counts.get(principal, 0) - 1
        if count > 0:
            self._counts[principal] = count
        else:
            self._counts.pop(principal, None)

    def count(self, principal: Principal) -> int:
        return self._counts.get(principal, 0)


class StreamSession:
    """One StreamChat RPC: its reader, its runs and its outbox."""

    def __init__(
        self,
        provider: ProviderBuilder,
        settings: Settings,
        lifecycle: Lifecycle,
        provider_name: str | None,
        stream: StreamContext,
        *,
        reauthenticate: Callable[[], Awaitable[Principal]],
        queued: QueuedRequests,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.lifecycle = lifecycle
        self.provider_name = provider_name
        self.stream = stream
        self._reauthenticate = reauthenticate
        self._queued = queued
        self.slots = asyncio.Semaphore(settings.max_inflight_per_stream)
        self.runs: dict[str, RequestRun] = {}
        # Frames the client has not read yet: at most OUTBOX_SIZE of them, and at most about two messages' worth.
        self.outbox: Outbox[bytes | None] = Outbox(OUTBOX_SIZE, 2 * settings.max_message_bytes, _frame_size)
        self.queued_count = 0
        self.queued_bytes = 0
        self.revoked: Unauthenticated | None = None  # set when the stream's credential stopped being valid
        self.idle: Unavailable | None = None  # set when the stream is ended for idling (stream_idle_timeout_s)
        self._last_activity = time.monotonic()  # a message received or a request ended
        self._reader_done = False
        self._draining = False
        self._linger: asyncio.TimerHandle | None = None
        self._linger_s = DRAIN_LINGER_S
        self._draining_why = "the server is shutting down; send this request elsewhere"
        self._ended = False

    def provider_for(self, request: pb.ChatRequest) -> str:
        if self.provider_name is not None:
            return self.provider_name
        return request.providerName or self.settings.default_provider

    async def send(self, frame: bytes) -> None:
        """Queue an encoded ChatResponse for the writer (waits while the client is behind)."""
        await self.outbox.put(frame)

    def forget(self, run: RequestRun) -> None:
        self._last_activity = time.monotonic()
        self.dequeue(run)
        if self.runs.get(run.key) is run:
            del self.runs[run.key]
        self._maybe_end()

    def dequeue(self, run: RequestRun) -> None:
        """`run` stopped waiting for a slot (it got one, or it ended): it no longer counts against the queue."""
        if run.queued:
            run.queued = False
            self.queued_count -= 1
            self.queued_bytes -= run.size
            self._queued.remove(self.stream.principal)

    def _maybe_end(self) -> None:
        """Queue the end of the stream once nothing more can be sent: reader done (or draining), no runs left.

        Draining (SIGTERM, or the stream's maximum age), the stream lingers up to DRAIN_LINGER_S for the client to
        half-close: a client still writing gets its requests refused (NOT_STARTED), which tells it to move on and
        half-close. Ending while its requests are still arriving would make the connection close under unread data
        (a TCP reset), which can destroy the last frames before the client reads them.
        """
        if self._ended or not (self._reader_done or self._draining) or self.runs:
            return
        if not self._reader_done:
            if self._linger is None:
                self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._end_now)
            return
        self._end_now()

    def _end_now(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        if not self._ended:
            self._ended = True
            self.outbox.put_nowait(_END)

    async def _refuse(self, request_id: str, error: GatewayError, request: pb.ChatRequest | None = None) -> None:
        """End a request that will not run with one error frame (and its access-log line)."""
        await self.send(refusal_frame(request_id, error).SerializeToString())
        provider = self.provider_for(request) if request is not None else ""
        access_log.record(
            RequestContext(self.stream, "StreamChat", provider, request_id), error.status, error.http_status
        )

    async def handle(self, raw: bytes) -> None:
        """Act on one raw ChatRequest message read from the stream."""
        self._last_activity = time.monotonic()
        try:
            request = decode_chat_request(raw)
        except UndecodableRequest as error:
            await self._refuse(error.request_id, error)
            return
        request_id = request.requestId
        if request.action == pb.REQUEST_ACTION_PING:
            await self.send(pong_frame(request_id))  # liveness: not a request, so no terminal frame
            return
        if request.action == pb.REQUEST_ACTION_CANCEL:
            run = self.runs.get(request_id)
            if run is not None:
                run.cancel(Cancelled(f"request {request_id!r} was cancelled by the client"))
            return
        if self._draining:
            await self._refuse(request_id, Unavailable(self._draining_why), request)
            return
        if request_id and request_id in self.runs:
            duplicate = duplicate_refusal_frame(
                request_id, AlreadyExists(f"request {request_id!r} is already in flight")
            )
            await self.send(duplicate.SerializeToString())
            return
        try:
            self.stream = self._with_principal(await self._reauthenticate())
        except Unauthenticated as error:
            await self._refuse(request_id, error, request)
            self._revoke(error)
            return
        refusal = self._admit(len(raw))
        if refusal is not None:
            await self._refuse(request_id, refusal, request)
            return
        run = RequestRun(self, request, len(raw))
        self.runs[run.key] = run
        run.task = asyncio.ensure_future(run.run())

    def _with_principal(self, principal: Principal) -> StreamContext:
        """The stream context, with the principal as just re-validated (unchanged in the common case)."""
        if principal == self.stream.principal:
            return self.stream
        return StreamContext(
            principal, self.stream.peer, self.stream.stream_id, self.stream.trace, self.stream.deadline
        )

    def _admit(self, size: int) -> ResourceExhausted | None:
        """Count a new request against the queue bounds, or say why it cannot wait."""
        settings = self.settings
        if self.queued_count >= settings.max_queued_per_stream:
            return ResourceExhausted(
                f"{self.queued_count} requests are already waiting on this stream (at most"
                f" {settings.max_inflight_per_stream} run at once, {settings.max_queued_per_stream} may wait)",
                retry_after=QUEUE_FULL_RETRY_AFTER_S,
            )
        if self.queued_count and self.queued_bytes + size > settings.max_queued_bytes_per_stream:
            return ResourceExhausted(
                f"the requests waiting on this stream already hold {self.queued_bytes} bytes"
                f" (at most {settings.max_queued_bytes_per_stream})",
                retry_after=QUEUE_FULL_RETRY_AFTER_S,
            )
        if not self._queued.try_add(self.stream.principal):
            return ResourceExhausted(
                f"{self._queued.limit} requests of this principal are already waiting across the server's streams",
                retry_after=QUEUE_FULL_RETRY_AFTER_S,
            )
        self.queued_count += 1
        self.queued_bytes += size
        return None

    def _revoke(self, error: Unauthenticated) -> None:
        """The stream's credential is no longer valid: read nothing more, end every run, then end the stream."""
        self.revoked = error
        for run in list(self.runs.values()):
            run.cancel(Unauthenticated(f"the stream's credential is no longer valid: {error.message}"))

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                await self.handle(raw)
                if self.revoked is not None:
                    break
        finally:
            self._reader_done = True
            self._maybe_end()

    async def _drain_when_asked(self) -> None:
        """Stop taking requests on SIGTERM, or once the stream is max_connection_age_s old (retired: its client
        reconnects, through a load balancer maybe to another replica). Requests in flight get 80% of the drain's
        grace, or max_connection_age_grace_s; the rest end with UNAVAILABLE; then the stream ends with OK."""
        grace_s = await self._wait_drain_or_age()
        if self.lifecycle.draining:  # SIGTERM: the linger fits in the 20% of the grace the requests do not get
            self._linger_s = min(DRAIN_LINGER_S, 0.1 * self.lifecycle.grace_s)
        self._draining = True
        self._maybe_end()
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        for run in list(self.runs.values()):
            run.cancel(Unavailable("the server shut down before this request finished; retry it elsewhere"))

    async def _wait_drain_or_age(self) -> float:
        """Wait for the drain, or the stream's retirement age; returns the grace its requests in flight get."""
        age_s = self.settings.max_connection_age_s
        if age_s > 0:
            try:
                # +-10% as gRPC jitters connection ages: streams opened together do not all reconnect at once.
                async with asyncio.timeout(age_s * random.uniform(0.9, 1.1)):
                    await self.lifecycle.wait_draining()
            except TimeoutError:
                self._draining_why = (
                    f"this stream reached its maximum age ({age_s:g} s, max_connection_age_s) and takes no new"
                    " requests; send this request on a new stream"
                )
                return self.settings.max_connection_age_grace_s
        else:
            await self.lifecycle.wait_draining()
        return self.lifecycle.grace_s * 0.8

    async def _end_when_idle(self, reader: asyncio.Future[None], timeout_s: float) -> None:
        """Stop reading once nothing was in flight and nothing arrived for `timeout_s` (0: never); the stream then
        ends with UNAVAILABLE (retryable: the client opens a new stream when it next needs one)."""
        if timeout_s <= 0:
            return
        while True:
            # While requests run, check again a whole timeout later: the last one to end restarts the clock.
            idle_for = time.monotonic() - self._last_activity
            if self.runs or idle_for < timeout_s:
                await asyncio.sleep(timeout_s if self.runs else timeout_s - idle_for)
                continue
            self.idle = Unavailable(
                f"the stream was idle for {timeout_s:g} s (no request in flight, nothing received) and the server"
                " ended it (stream_idle_timeout_s); open a new stream"
            )
            reader.cancel()
            return

    async def serve(self, requests: AsyncIterator[bytes], write: Callable[[bytes], Awaitable[None]]) -> None:
        """Run the stream: read and run requests in background tasks; write their encoded frames here, in order.

        Raises `Unauthenticated` after the last frame when the stream's credential stopped being valid, and
        `Unavailable` when it was ended for idling.
        """
        reader = asyncio.ensure_future(self._read(requests))
        drainer = asyncio.ensure_future(self._drain_when_asked())
        idler = asyncio.ensure_future(self._end_when_idle(reader, self.settings.stream_idle_timeout_s))
        try:
            while (frame := await self.outbox.get()) is not _END:
                await write(frame)
            if reader.done() and not reader.cancelled() and (error := reader.exception()) is not None:
                raise error
            if self.revoked is not None:
                raise self.revoked
            if self.idle is not None:
                raise self.idle
        finally:
            reader.cancel()
            drainer.cancel()
            idler.cancel()
            if self._linger is not None:
                self._linger.cancel()
            runs = [run.task for run in self.runs.values() if run.task is not None]
            for task in runs:
                task.cancel()
            if runs:
                await asyncio.gather(*runs, return_exceptions=True)
