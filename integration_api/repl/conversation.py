"""`Conversation`: the REPL's link to the gateway (client, stream, current session) and what it does over it.

It connects (GetVersion, a StreamChat stream checked with a PING, a session created or resumed), sends each typed
message as the only new message of the session and renders the reply as it streams, and reconnects when the link
is lost: when a request fails for want of a connection, and when the idle watcher's PING goes unanswered. A
reconnection keeps the session (the gateway keeps it, not this process) and says so; a session the gateway no
longer has is replaced by a new one, and that is said too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from integration_api.client import (
    APIConnectionError,
    APIError,
    AsyncChatResponse,
    AsyncChatStream,
    AsyncClient,
    ChatResult,
    Credential,
    NotFoundError,
    RequestCancelledError,
    ServiceUnavailableError,
    SessionInfo,
    StreamClosedError,
    TextDelta,
)
from integration_api.repl.options import ReplOptions
from integration_api.repl.render import Renderer
from integration_api.repl.stats import ClientStats
from integration_api.repl.views import reply_summary

# Failures that mean "the link is gone" (APIConnectionError and StreamInterruptedError among them), as opposed to
# the request being refused.
LINK_ERRORS = (ServiceUnavailableError, StreamClosedError)
RECONNECT_ATTEMPTS = 8
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 3.0
UNARY_TIMEOUT_S = 30.0
PING_WITHIN_S = 3.0


class NotConnected(Exception):
    """A command needs the gateway and the REPL is disconnected."""


class Conversation:
    """One REPL's connection, session and settings; at most one message in flight at a time."""

    def __init__(self, options: ReplOptions, render: Renderer) -> None:
        self.options = options
        self.render = render
        self.target = options.connection.target
        self.provider = options.provider
        self.model = options.model
        self.system = options.system
        self.parameters: dict[str, Any] = dict(options.parameters)
        self.stats = ClientStats()
        self.session_id: str | None = None
        self.client: AsyncClient | None = None
        self.stream: AsyncChatStream | None = None
        self.response: AsyncChatResponse | None = None  # the reply streaming now
        self._link = asyncio.Lock()  # one (re)connection at a time, and no message while one runs

    @property
    def connected(self) -> bool:
        return self.client is not None and self.stream is not None

    def require(self) -> tuple[AsyncClient, AsyncChatStream]:
        if self.client is None or self.stream is None:
            raise NotConnected("not connected: /connect first")
        return self.client, self.stream

    # --- the link -----------------------------------------------------------------------------------------------

    async def _open(self) -> str:
        """Open a client and a stream and check both; returns the gateway's version line."""
        await self._close()
        connection = self.options.connection
        client = AsyncClient(
            self.target,
            api_key=connection.api_key,
            service_token=connection.service_token,
            tls=connection.tls,
            root_certificates=connection.root_certificates,
            timeout=UNARY_TIMEOUT_S,
        )
        try:
            version = await client.get_version()
            stream = client.stream(self.provider)
            await stream.ping(PING_WITHIN_S)
        except BaseException:
            await client.aclose()
            raise
        self.client, self.stream = client, stream
        return f"gateway {version.server_version}, protocol revision {version.protocol_revision}"

    async def _close(self) -> None:
        client, self.client, self.stream = self.client, None, None
        if client is not None:
            await client.aclose()

    async def connect(self, target: str | None = None) -> None:
        """(Re)connect, to `target` when given, and resume the current session or start one."""
        async with self._link:
            if target:
                self.target = target
            described = await self._open()
            self.render.info(f"connected to {self.target} ({described})")
            await self._resume_or_start()

    async def disconnect(self) -> None:
        async with self._link:
            was = self.connected
            await self._close()
        self.render.info(f"disconnected from {self.target}" if was else "not connected")

    async def reconnect(self, cause: str, lost: AsyncChatStream | None) -> bool:
        """Re-establish the link whose stream `lost` failed, with backoff; says what happened. False when every
        attempt failed."""
        async with self._link:
            if self.stream is not lost:
                return self.connected  # replaced meanwhile: another reconnect (or /connect) got there first
            self.render.warn(f"connection to {self.target} lost ({cause}); reconnecting")
            await self._close()
            delay = RECONNECT_INITIAL_S
            for attempt in range(1, RECONNECT_ATTEMPTS + 1):
                try:
                    await self._open()
                except (APIConnectionError, ServiceUnavailableError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                self.stats.reconnections += 1
                self.render.info(f"reconnected to {self.target} (attempt {attempt})")
                await self._resume_or_start()
                return True
            self.render.error(f"could not reconnect to {self.target} after {RECONNECT_ATTEMPTS} attempts: /connect")
            return False

    async def watch(self, interval_s: float) -> None:
        """Ping the idle stream every `interval_s` seconds; an unanswered PING means reconnecting now."""
        while True:
            await asyncio.sleep(interval_s)
            stream = self.stream
            if stream is None or self.response is not None or self._link.locked():
                continue  # disconnected on purpose, a reply is streaming (the link works), or a reconnect runs
            try:
                await stream.ping(PING_WITHIN_S)
            except LINK_ERRORS as error:
                await self.reconnect(str(error), stream)

    async def close(self) -> None:
        async with self._link:
            await self._close()

    # --- sessions -----------------------------------------------------------------------------------------------

    async def _resume_or_start(self) -> None:
        client, _ = self.require()
        if self.session_id is not None:
            try:
                info = await client.get_session(self.session_id)
            except NotFoundError:
                self.render.warn(f"session {self.session_id} is gone (expired or deleted); starting a new one")
            else:
                self.render.info(f"session {info.id} kept ({info.message_count} messages)")
                return
        await self._start_session(client)

    async def _start_session(self, client: AsyncClient, provider: str | None = None) -> SessionInfo:
        info = await client.create_session(provider or self.provider, self.model or None, system=self.system or None)
        self.session_id = info.id
        self.render.info(f"session {info.id} on {info.provider}" + (f" ({self.system!r})" if self.system else ""))
        return info

    async def new_session(self) -> SessionInfo:
        client, _ = self.require()
        return await self._start_session(client)

    async def switch_provider(self, provider: str) -> None:
        """Use `provider` from now on: a new session and a stream of its own (a session is one provider's).

        The session is created first: a provider the gateway refuses changes nothing.
        """
        if not self.connected:
            self.provider = provider
            return
        async with self._link:
            client, old = self.require()
            await self._start_session(client, provider)
            self.provider = provider
            self.stream = client.stream(provider)
            await old.aclose()

    async def session_info(self) -> SessionInfo:
        client, _ = self.require()
        if self.session_id is None:
            raise NotConnected("no current session: /new starts one")
        return await client.get_session(self.session_id)

    async def delete(self, session_id: str | None) -> str:
        client, _ = self.require()
        target = session_id or self.session_id
        if target is None:
            raise NotConnected("no current session to delete")
        await client.delete_session(target)
        if target == self.session_id:
            self.session_id = None
        return target

    # --- messages -----------------------------------------------------------------------------------------------

    def _credential(self) -> Credential | None:
        key = self.options.credential_key
        return Credential.of(key=key) if key else None

    async def send(self, text: str) -> None:
        """Send `text` as the session's new message and stream the reply; failures are rendered, not raised."""
        async with self._link:
            client, stream = self.require()
            if self.session_id is None:
                await self._start_session(client)
        assert self.session_id is not None
        self.stats.messages_sent += 1
        started = time.perf_counter()
        response = stream.chat(
            [{"role": "user", "content": text}],
            model=self.model or None,
            credential=self._credential(),
            parameters=self.parameters,
            session_id=self.session_id,
        )
        self.response = response
        try:
            await self._stream_reply(response, started)
        except RequestCancelledError:
            self.stats.streams_cancelled += 1
            self.render.reply_failed("cancelled")
        except LINK_ERRORS as error:
            self.stats.streams_failed += 1
            self.render.reply_failed(f"not answered: {error}")
            self.response = None
            if await self.reconnect(str(error), stream):
                self.render.info("the message was not kept: send it again")
        except APIError as error:
            self.stats.streams_failed += 1
            self.render.reply_failed(f"failed: {error.status} {error.code}: {error.message}")
        finally:
            self.response = None

    async def _stream_reply(self, response: AsyncChatResponse, started: float) -> None:
        async for event in response:
            if isinstance(event, TextDelta):
                self.stats.chunks += 1
                self.render.delta(event.text)
            elif isinstance(event, ChatResult):
                elapsed = time.perf_counter() - started
                self.stats.reply_ok(elapsed)
                self.render.reply_end(reply_summary(event, elapsed))

    def interrupt(self) -> bool:
        """Ctrl-C: cancel the reply streaming now (the gateway ends it as CANCELLED); False when there is none."""
        response = self.response
        if response is None or response.done:
            return False
        with contextlib.suppress(StreamClosedError):
            response.cancel()
        return True
