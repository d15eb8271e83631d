"""`AsyncChatStream`: one persistent StreamChat call carrying many concurrent requests, with reconnection.

Every `chat()` registers a `RequestState` under its requestId and queues its ChatRequest; one supervisor task
reads the call and routes each frame to its request. When the call breaks (UNAVAILABLE, a server restart, or the
server ending the stream while requests are pending), the stream:

- fails each request that had already produced output with a retryable `StreamInterruptedError` (its output
  cannot be un-seen, so it is never silently replayed);
- opens a new StreamChat (after a backoff, waiting for the channel to be ready, at most `reconnect_attempts`
  times in a row without a frame received) and re-sends the requests that had produced nothing yet;
- when every attempt fails, fails those with a retryable `APIConnectionError`. The stream stays usable: the next
  `chat()` tries again.

A server going away (SIGTERM's drain, or a stream past the server's max_connection_age_s) refuses the requests it
will not run with an UNAVAILABLE error frame marked NOT_STARTED, runs those in flight to their end, then ends the
stream. Such a refusal is never shown to the caller: as HTTP/2 does with GOAWAY, the stream stops writing on that
call (half-closes it, so the requests in flight finish there), opens a new call at once (through a load balancer,
maybe to another replica) and sends the refused request and every later one on it. A request refused that way
more than `reconnect_attempts` times ends with the refusal.

A stream that never received a frame does not reconnect when the gateway could not be reached at all: its first
failure (e.g. a wrong target) is reported at once as `APIConnectionError`. The gateway's own UNAVAILABLE (a
replica draining, behind a load balancer) is retried like a broken stream.

Any other failure of the call (e.g. `AuthenticationError`) fails every pending request and the stream for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType

from integration_api.client._config import MAX_MESSAGE_BYTES
from integration_api.client._credentials import Credential
from integration_api.client._errors import (
    APIConnectionError,
    APIError,
    ClientDisabledError,
    IntegrationAPIError,
    InternalServerError,
    RequestCancelledError,
    ServiceUnavailableError,
    StreamClosedError,
    StreamInterruptedError,
)
from integration_api.client._requests import (
    Parameters,
    cancel_request,
    chat_request,
    ensure_fits,
    new_request_id,
    ping_request,
)
from integration_api.client._response import AsyncChatResponse, RequestState
from integration_api.client._results import is_duplicate_refusal, is_refused_unavailable, is_terminal
from integration_api.client._transport import AsyncTransport, StreamCall
from integration_api.client._types import MessageParam, ToolParam
from integration_api.proto import integration_api_pb2 as pb

logger = logging.getLogger(__name__)

RECONNECT_INITIAL_BACKOFF_S = 0.05
RECONNECT_MAX_BACKOFF_S = 2.0
RECONNECT_READY_INITIAL_S = 0.5  # how long one attempt waits for the channel; doubles per attempt
RECONNECT_READY_MAX_S = 5.0
CLOSE_GRACE_S = 2.0  # how long closing an idle stream waits for the server to end it cleanly


class _Connection:
    """One StreamChat call, the queue of requests still to be written on it and the requests it carries."""

    def __init__(self, transport: AsyncTransport) -> None:
        self.outbox: asyncio.Queue[pb.ChatRequest | None] = asyncio.Queue()
        self.call: StreamCall = transport.open_stream(self._requests())
        self.carried: dict[str, RequestState] = {}  # sent on this call and not ended yet (or not known to have)
        self.task: asyncio.Task[None] | None = None  # the one reading it

    async def _requests(self) -> AsyncIterator[pb.ChatRequest]:
        while (request := await self.outbox.get()) is not None:
            yield request

    def send(self, request: pb.ChatRequest) -> None:
        self.outbox.put_nowait(request)

    def half_close(self) -> None:
        """End the request iterator (gRPC then half-closes the call, if it is still open). Idempotent."""
        self.outbox.put_nowait(None)


def _copy_error(error: IntegrationAPIError, request_id: str) -> IntegrationAPIError:
    if isinstance(error, APIError):
        return error.copy(request_id=request_id)
    if isinstance(error, ClientDisabledError | StreamClosedError):
        return type(error)(str(error))
    return error


class AsyncChatStream:
    """One StreamChat call to the gateway, shared by any number of concurrent `chat()` requests.

    Use it as ``async with client.stream(provider) as stream:``; leaving the block closes the call (requests
    still in flight then fail with `StreamClosedError`). `credential` and `model` given here are the defaults
    of every `chat()` on this stream.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        provider: str | None = None,
        *,
        credential: Credential | None = None,
        model: str | None = None,
        reconnect_attempts: int = 5,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._provider = provider
        self._transport = transport
        self._credential = credential
        self._model = model
        self._reconnect_attempts = reconnect_attempts
        self._max_message_bytes = max_message_bytes
        self._pending: dict[str, RequestState] = {}
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._connection: _Connection | None = None  # where new requests go
        self._live: set[_Connection] = set()  # calls still open: the current one, and retired ones finishing
        self._on: dict[str, _Connection] = {}  # the call each pending request was sent on
        self._reconnect_wait = False  # between a broken call and the next one
        self._tasks: set[asyncio.Task[None]] = set()  # each reads one call, then may wait to reconnect
        self._failure: IntegrationAPIError | None = None
        self._failed_attempts = 0
        self._ever_connected = False  # a frame has been received: only a stream that worked "breaks"
        self._closed = False

    # --- public surface -------------------------------------------------------------------------------------

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
    ) -> AsyncChatResponse:
        """Send one request on this stream now; returns its response (an async iterator of events).

        `messages` are dicts like ``{"role": "user", "content": "hi"}`` or message objects; `parameters` are
        plain values sent as ``model.<name>`` (the prefix is optional); `request_id` defaults to a new uuid4 hex.
        With `session_id` (a session of the gateway's SessionService), send only the new message(s): the gateway
        holds the history.
        A request over the client's `max_message_bytes` raises `RequestTooLargeError` and is not sent (the stream
        and its other requests are untouched).
        """
        self._raise_if_unusable()
        request_id = request_id or new_request_id()
        if request_id in self._pending:
            raise ValueError(f"request id {request_id!r} is already in flight on this stream")
        request = chat_request(
            messages,
            request_id=request_id,
            provider=self._provider,
            model=model or self._model,
            credential=credential or self._credential,
            tools=tools,
            parameters=parameters,
            session_id=session_id,
        )
        ensure_fits(request, self._max_message_bytes, request_id=request_id)
        state = RequestState(request)
        self._pending[request_id] = state
        try:
            self._send_or_connect(state)
        except BaseException:
            del self._pending[request_id]
            raise
        return AsyncChatResponse(state, self._cancel)

    async def ping(self, within: float = 5.0) -> float:
        """Check the stream is alive: send a PING, wait for the gateway's PONG; returns the round trip in seconds.

        Raises `APIConnectionError` when no PONG arrives `within` seconds (or the stream is reconnecting).
        """
        self._raise_if_unusable()
        if self._connection is None and not self._reconnect_wait:
            self._connect()
        connection = self._connection
        if connection is None:
            raise APIConnectionError(f"the stream to {self._transport.target} is reconnecting; ping it again later")
        request_id = new_request_id()
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[request_id] = answered
        started = time.perf_counter()
        try:
            connection.send(ping_request(request_id))
            async with asyncio.timeout(within):
                await answered
        except TimeoutError as exc:
            raise APIConnectionError(f"no PONG from {self._transport.target} within {within:g} s") from exc
        finally:
            self._pings.pop(request_id, None)
        return time.perf_counter() - started

    @property
    def provider(self) -> str | None:
        """The provider of every request on this stream (None: the gateway's default)."""
        return self._provider

    @property
    def in_flight(self) -> int:
        """How many requests have not ended yet."""
        return len(self._pending)

    async def aclose(self) -> None:
        """Close the call; requests still in flight fail with `StreamClosedError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._connection = None
        connections = list(self._live)
        tasks = list(self._tasks)
        if connections and not self._pending:
            for connection in connections:
                connection.half_close()  # idle: let the server end the call cleanly
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks, return_exceptions=True)), CLOSE_GRACE_S)
        for connection in connections:
            connection.call.cancel()
            connection.half_close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
        self._finish_all(StreamClosedError("the stream was closed before this request finished"))

    async def __aenter__(self) -> AsyncChatStream:
        self._raise_if_unusable()
        if self._connection is None:
            self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncChatStream provider={self.provider!r} in_flight={self.in_flight}>"

    # --- sending --------------------------------------------------------------------------------------------

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise StreamClosedError("this stream is closed; open a new one with client.stream()")
        if self._failure is not None:
            raise _copy_error(self._failure, "")

    def _send_or_connect(self, state: RequestState) -> None:
        if self._connection is not None:
            self._place(state, self._connection)
        elif not self._reconnect_wait:
            self._connect()  # sends every pending request not on a call, this one included
        # else: the reconnection in progress sends it on the new call

    def _place(self, state: RequestState, connection: _Connection) -> None:
        self._on[state.request_id] = connection
        connection.carried[state.request_id] = state
        connection.send(state.request)

    def _connect(self) -> None:
        """Open a new call, (re-)send on it every pending request no open call carries, and start reading it."""
        connection = _Connection(self._transport)
        self._connection = connection
        self._live.add(connection)
        for state in list(self._pending.values()):
            if state.request_id in self._on:
                continue  # in flight on a retired call, which finishes it
            if state.cancel_requested:
                self._end(state, RequestCancelledError("cancelled before it was sent", request_id=state.request_id))
            else:
                self._place(state, connection)
        connection.task = asyncio.ensure_future(self._supervise(connection))
        self._tasks.add(connection.task)
        connection.task.add_done_callback(self._tasks.discard)

    def _retire(self, connection: _Connection) -> None:
        """Write nothing more on `connection` (the server is going away): half-close it so that the requests in
        flight on it finish there; new requests go on a new call, opened now."""
        if connection is self._connection:
            self._connection = None
            connection.half_close()
            if not self._reconnect_wait and not self._closed:
                self._connect()

    def _cancel(self, state: RequestState) -> None:
        if state.done or state.cancel_requested:
            return
        state.cancel_requested = True
        connection = self._on.get(state.request_id)
        if connection is not None:
            connection.send(cancel_request(state.request_id))
        # else: reconnecting; `_connect` ends it instead of re-sending it

    # --- receiving ------------------------------------------------------------------------------------------

    def _route(self, frame: pb.ChatResponse, connection: _Connection) -> None:
        self._failed_attempts = 0  # the call works
        self._ever_connected = True
        if frame.pong:  # the answer to a ping(), never a request's frame
            answered = self._pings.get(frame.requestId)
            if answered is not None and not answered.done():
                answered.set_result(None)
            return
        state = self._pending.get(frame.requestId)
        if state is None:
            return  # a request already ended here (e.g. cancelled locally); nobody waits for it
        if is_duplicate_refusal(frame):
            return  # this client sends an id once; the request in flight under it goes on
        if is_terminal(frame):
            if self._resend_refused(state, frame, connection):
                return
            self._forget(state)
            state.produced_output = True
            state.finish(frame)
        else:
            state.put(frame)

    def _resend_refused(self, state: RequestState, frame: pb.ChatResponse, connection: _Connection) -> bool:
        """A request the server refused before it ran because it is going away: resend it on a new call."""
        if not is_refused_unavailable(frame) or state.produced_output or state.cancel_requested:
            return False
        if state.refusals >= self._reconnect_attempts:
            return False  # refused by every server tried: the caller sees the refusal
        state.refusals += 1
        connection.carried.pop(state.request_id, None)
        self._on.pop(state.request_id, None)
        self._retire(connection)  # opens the new call, which then carries this request too
        if state.request_id not in self._on:
            self._send_or_connect(state)
        return True

    def _forget(self, state: RequestState) -> None:
        self._pending.pop(state.request_id, None)
        connection = self._on.pop(state.request_id, None)
        if connection is not None:
            connection.carried.pop(state.request_id, None)

    def _end(self, state: RequestState, item: IntegrationAPIError) -> None:
        self._forget(state)
        state.finish(item)

    def _finish_all(self, error: IntegrationAPIError) -> None:
        for state in list(self._pending.values()):
            self._end(state, _copy_error(error, state.request_id))

    async def _pump(self, connection: _Connection) -> APIError | None:
        """Route the call's frames until it ends; returns why it ended (None: the server ended it)."""
        try:
            async for frame in connection.call.frames():
                self._route(frame, connection)
        except APIError as error:
            return error
        return None

    async def _supervise(self, connection: _Connection) -> None:
        """Read one call until it ends, then deal with what it leaves: requests to resend, a reconnection."""
        try:
            error = await self._pump(connection)
            connection.half_close()  # ends the request iterator gRPC consumes, even when the call died
            self._live.discard(connection)
            if self._closed:
                return
            current = connection is self._connection
            if current:
                self._connection = None
            if error is not None and not isinstance(error, ServiceUnavailableError):
                self._failure = error
                self._finish_all(error)
                return
            self._interrupt_started(connection, error)
            if not self._ever_connected and isinstance(error, APIConnectionError):
                self._finish_all(error)  # never reached the gateway: fail fast instead of retrying
            elif not current:
                self._resend_unplaced()  # a retired call: what it did not finish goes on the current one
            elif any(request_id not in self._on for request_id in self._pending):
                self._reconnect_wait = True
                try:
                    reconnect = await self._wait_to_reconnect(error)
                finally:
                    self._reconnect_wait = False
                if reconnect and not self._closed and self._connection is None:
                    self._connect()
        except ClientDisabledError as error:
            self._finish_all(error)
        except Exception as exc:  # a bug here must not leave requests waiting forever
            logger.exception("the integration-api client stream failed unexpectedly")
            self._finish_all(InternalServerError(f"the client stream failed unexpectedly: {exc!r}"))

    def _resend_unplaced(self) -> None:
        for state in list(self._pending.values()):
            if state.request_id in self._on:
                continue
            if state.cancel_requested:
                self._end(state, RequestCancelledError("cancelled before it was sent", request_id=state.request_id))
            else:
                self._send_or_connect(state)
                if self._connection is None:
                    return  # reconnecting: that sends every request left

    def _interrupt_started(self, connection: _Connection, error: APIError | None) -> None:
        """The call ended: fail the requests it carried that had produced output; the others wait to be resent."""
        cause = error.message if error is not None else "the server ended the stream"
        carried, connection.carried = list(connection.carried.values()), {}
        for state in carried:
            if self._on.get(state.request_id) is connection:
                del self._on[state.request_id]
            if state.done:
                continue
            if state.produced_output:
                message = (
                    f"the stream to {self._transport.target} broke ({cause}) after this request had produced "
                    "output; it was not re-sent: send it again to retry"
                )
                self._end(state, StreamInterruptedError(message, request_id=state.request_id))

    async def _wait_to_reconnect(self, error: APIError | None) -> bool:
        """Back off until the channel is ready again; False (pending requests failed) after too many attempts."""
        while self._failed_attempts < self._reconnect_attempts:
            growth = 2**self._failed_attempts
            self._failed_attempts += 1
            await asyncio.sleep(
                min(RECONNECT_INITIAL_BACKOFF_S * growth, RECONNECT_MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
            )
            try:
                await self._transport.wait_for_ready(min(RECONNECT_READY_INITIAL_S * growth, RECONNECT_READY_MAX_S))
            except APIConnectionError:
                continue
            return True
        cause = error.message if error is not None else "the server ended the stream"
        attempts, self._failed_attempts = self._failed_attempts, 0
        failed = APIConnectionError(
            f"the stream to {self._transport.target} broke ({cause}) and {attempts} reconnection attempts "
            "failed; this request was not answered"
        )
        for state in list(self._pending.values()):
            if state.request_id not in self._on:  # those on a retired call that is still open finish there
                self._end(state, _copy_error(failed, state.request_id))
        return False
