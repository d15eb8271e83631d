"""The shared machinery of the vendor wire-format emulators.

Each vendor emulator (``integration_api.testing.emulators.<vendor>``) is a small aiohttp server on 127.0.0.1
that speaks that vendor's real HTTP protocol. They all take the same `Script` (what to answer: text, tool
calls, usage, delay per chunk, faults), so one test can run against every vendor, and they all record what
they received (`RecordedRequest`: headers, body, whether the client went away before the end).

A vendor emulator subclasses `Emulator` and provides its routes, its error body shape, and the list of SSE
items a script becomes; `stream_sse` plays those items with the script's delays and faults.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

# A fault that stalls "forever" stalls this long; tests use timeouts far below it.
STALL_FOREVER_S = 3600.0


@dataclass
class ToolCallScript:
    name: str
    arguments: str = "{}"  # JSON text
    id: str = ""  # emulators invent one when empty


@dataclass
class Fault:
    """What goes wrong. Chunk counts are of content chunks (the ones carrying text or tool-call pieces)."""

    status: int | None = None  # answer with this HTTP status and the vendor's error body, before any byte
    message: str = "emulated failure"
    retry_after: float | None = None  # sent as the retry-after header with `status`
    stall_before_s: float = 0.0  # wait this long before the response starts
    stall_after_chunks: int | None = None  # after N content chunks, stall for `stall_s`
    stall_s: float = STALL_FOREVER_S
    reset_after_chunks: int | None = None  # after N content chunks, reset the connection
    malformed_after_chunks: int | None = None  # after N content chunks, send an event that is not valid JSON
    error_event_after_chunks: int | None = None  # after N content chunks, send the vendor's in-stream error event
    error_event_status: int = 500  # the status the in-stream error event describes (vendors that carry one)
    # Append what the request carried (every header, the query, the body) to the error text, as a careless
    # upstream might: the credential then comes back in the error body or event (the key-leak tests use it).
    echo_request: bool = False


@dataclass
class Script:
    """What the emulator answers to one request."""

    text: str = "Hello from the emulator."
    tool_calls: list[ToolCallScript] = field(default_factory=list)
    input_tokens: int = 11
    output_tokens: int | None = None  # None: one per text chunk and tool call
    finish_reason: str = ""  # normalised ("stop", "length", "content_filter"); "" = stop, or tool_calls if any
    chunk_delay_s: float = 0.0
    fault: Fault | None = None
    embedding_dimensions: int = 8

    def text_chunks(self) -> list[str]:
        """The text split the way the emulators stream it: one chunk per word (with its trailing space)."""
        pieces: list[str] = []
        for word in self.text.split(" "):
            if pieces:
                pieces[-1] += " "
            pieces.append(word)
        return [piece for piece in pieces if piece]

    def usage_output(self) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return len(self.text_chunks()) + len(self.tool_calls)

    def normalised_finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def tool_call_id(self, index: int) -> str:
        return self.tool_calls[index].id or f"call_{index}_{abs(hash(self.tool_calls[index].name)) % 10**8}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON when it was JSON, else the raw bytes
    completed: bool = False  # the emulator wrote its whole answer
    client_disconnected: bool = False  # the client went away before the end


@dataclass
class SSEItem:
    """One server-sent event. `content` marks chunks that count for the fault positions."""

    data: Any  # dict/list (sent as JSON) or str (sent as is)
    event: str | None = None
    content: bool = False


class Emulator:
    """Base of every vendor emulator. Use as ``async with OpenAIEmulator() as emulator: emulator.base_url``."""

    vendor = "base"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default_script = Script()
        self.requests: list[RecordedRequest] = []
        self._scripts: deque[Script] = deque()
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL to give the vendor's SDK as its base URL (vendors override to add their path prefix)."""
        return self.origin

    # --- scripting -------------------------------------------------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """The next requests get these scripts, in order; after them, `default_script`."""
        self._scripts.extend(scripts)

    def clear(self) -> None:
        """Forget the queued scripts (the recorded requests stay)."""
        self._scripts.clear()

    def next_script(self) -> Script:
        return self._scripts.popleft() if self._scripts else self.default_script

    async def record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Any = raw
        if raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                body = orjson.loads(raw)
        recorded = RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    # --- vendor hooks ----------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        """The vendor's error body for `status` (override for the vendor's shape)."""
        headers = {"retry-after": _seconds(retry_after)} if retry_after is not None else {}
        return web.json_response({"error": {"message": message, "code": status}}, status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        """The vendor's in-stream error event (override)."""
        return SSEItem({"error": {"message": message, "code": status}})

    def stall_over(self, request: web.Request) -> bool:
        """Whether a stall playing on `request` ends early (Replicate's ends when its prediction is cancelled)."""
        return False

    def malformed_event(self) -> SSEItem:
        """An event whose data is not JSON (vendors whose SDKs skip nameless events give it a name)."""
        return SSEItem("{this is not json")

    # --- playing a script ------------------------------------------------------------------------------------

    async def fault_before_response(self, script: Script, recorded: RecordedRequest) -> web.Response | None:
        """Apply the faults that happen before the first byte; return the error response to send, if any."""
        fault = script.fault
        if fault is None:
            return None
        if fault.stall_before_s:
            await asyncio.sleep(fault.stall_before_s)
        if fault.status is not None:
            recorded.completed = True
            return self.error_response(fault.status, fault_message(fault, recorded), fault.retry_after)
        return None

    async def stream_sse(
        self,
        request: web.Request,
        recorded: RecordedRequest,
        script: Script,
        items: Iterable[SSEItem],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send `items` as server-sent events, with the script's delay and mid-stream faults."""
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache", **(headers or {})}
        )
        await response.prepare(request)
        fault = script.fault or Fault()
        sent_content = 0
        try:
            for item in items:
                if item.content:
                    if await self._mid_stream_fault(request, response, recorded, fault, sent_content):
                        return response
                    if script.chunk_delay_s and sent_content:
                        await self._sleep_watching(request, recorded, script.chunk_delay_s)
                    sent_content += 1
                await response.write(encode_sse(item))
            await response.write_eof()
            recorded.completed = True
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            recorded.client_disconnected = True
        return response

    async def _mid_stream_fault(
        self, request: web.Request, response: web.StreamResponse, recorded: RecordedRequest, fault: Fault, sent: int
    ) -> bool:
        """Apply the fault due after `sent` content chunks; True when the response must end here."""
        if fault.stall_after_chunks == sent:
            await self._sleep_watching(request, recorded, fault.stall_s)
        if fault.error_event_after_chunks == sent:
            await response.write(encode_sse(self.error_event(fault.error_event_status, fault_message(fault, recorded))))
            await response.write_eof()
            recorded.completed = True
            return True
        if fault.malformed_after_chunks == sent:
            await response.write(encode_sse(self.malformed_event()))
            await response.write_eof()
            recorded.completed = True
            return True
        if fault.reset_after_chunks == sent:
            if request.transport is not None:
                request.transport.abort()
            return True
        return False

    async def _sleep_watching(self, request: web.Request, recorded: RecordedRequest, seconds: float) -> None:
        """Sleep, but notice (and record) a client that goes away meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline and not self.stall_over(request):
            transport = request.transport
            if transport is None or transport.is_closing():
                recorded.client_disconnected = True
                raise ConnectionResetError("client went away")
            await asyncio.sleep(min(0.01, max(deadline - loop.time(), 0)))


def fault_message(fault: Fault, recorded: RecordedRequest) -> str:
    """The text of a fault's error body or event: its message, plus the request itself when it echoes it."""
    if not fault.echo_request:
        return fault.message
    body = recorded.body.decode("utf-8", "replace") if isinstance(recorded.body, bytes) else recorded.body
    headers = {str(name): value for name, value in recorded.headers.items()}  # aiohttp's names are a str subclass
    echoed = {"method": recorded.method, "path": recorded.path, "query": dict(recorded.query), "headers": headers}
    return f"{fault.message}; the request was {orjson.dumps({**echoed, 'body': body}).decode()}"


def encode_sse(item: SSEItem) -> bytes:
    data = item.data if isinstance(item.data, str) else orjson.dumps(item.data).decode()
    prefix = f"event: {item.event}\n" if item.event else ""
    return f"{prefix}data: {data}\n\n".encode()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
