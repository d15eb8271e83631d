"""Load generator for the bridge scenario (w): StreamChat over the gRPC-JSON bridge's WebSocket, as a `LoadJob`.

The same requests as the gRPC scenario (b) (`integration_api.loadtest.request_template`: the simulated provider,
the same prompt and reply), here in the protobuf JSON mapping: one socket per concurrent stream, one request at
a time on each, the next sent when the previous one's terminal frame (`final: true`) arrived. A request's frames
are its text frames plus the final one, its first frame the first text frame, its tokens the final frame's
`usage.outputTokens`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.http_load import _drive, _Outcome
from integration_api.loadtest import LoadConfig, LoadStats, StartFn, request_template
from integration_api.proto import integration_api_pb2 as pb

STREAM_CHAT_PATH = "/integration_api.UnifiedProviderService/StreamChat"
CONNECT_TIMEOUT_S = 10.0


class _RequestFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"error frame {code}")
        self.code = code


@dataclass(frozen=True)
class WebSocketStreamChatLoad:
    """`concurrency` WebSockets on the bridge at `base_url` (``ws://host:port``), each one request at a time."""

    base_url: str
    api_key: str
    concurrency: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    prompt_words: int = 20

    def _request_json(self) -> dict[str, Any]:
        config = LoadConfig(parameters=self.parameters, prompt_words=self.prompt_words)
        return json_format.MessageToDict(pb.ChatRequest.FromString(request_template(config)))

    async def run(self, start: StartFn, stats: LoadStats) -> None:
        template = self._request_json()
        url = f"{self.base_url}{STREAM_CHAT_PATH}"
        headers = {"x-api-key": self.api_key}
        sockets = [await _connect(url, headers) for _ in range(self.concurrency)]
        idle: asyncio.Queue[ClientConnection] = asyncio.Queue()
        for socket in sockets:
            idle.put_nowait(socket)
        counter = iter(range(1 << 62))

        async def one() -> _Outcome:
            socket = await idle.get()  # as many sockets as lanes: never waits
            try:
                return await _chat(socket, orjson.dumps({**template, "requestId": f"w{next(counter)}"}))
            finally:
                idle.put_nowait(socket)

        def code(error: Exception) -> str:
            return str(error.code) if isinstance(error, _RequestFailed) else type(error).__name__

        try:
            await one()  # connected and warm before the clock starts
            await _drive(start, stats, self.concurrency, one, (_RequestFailed, ConnectionClosed), code)
        finally:
            await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)


async def _connect(url: str, headers: dict[str, str]) -> ClientConnection:
    """A socket on the bridge; the gateway opens its HTTP port just after the gRPC port the bench waited for."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            return await connect(url, additional_headers=headers, max_size=None)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _chat(socket: ClientConnection, request: bytes) -> _Outcome:
    """Send one request and read its frames up to the terminal one (one request at a time per socket)."""
    await socket.send(request.decode())
    first, frames = 0, 0
    while True:
        frame = orjson.loads(await socket.recv())
        frames += 1
        if frame.get("final"):
            if not frame.get("success"):
                raise _RequestFailed(int(frame.get("code", 0)))
            return _Outcome(first or time.monotonic_ns(), frames, int(frame.get("usage", {}).get("outputTokens", 0)))
        first = first or time.monotonic_ns()
