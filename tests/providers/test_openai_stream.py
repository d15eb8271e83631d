"""The `openai` adapter's own reading of the SSE stream (the fast path), and transport failures.

Served by canned HTTP servers rather than the emulator, so each test controls the exact bytes and their timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import orjson
import pytest

from integration_api.errors import GatewayError, Unavailable
from providers.base import Provider, ProviderEnv
from providers.openai import SPEC
from providers.types import ChatCall, TextDelta, UserMessage
from tests.providers.helpers import SEND_PATHS, collect, finished, on_send_path, stream_error, text_of

KEY = "sk-test-0123456789abcdef"
MODEL = "gpt-4o-mini"


def chat(*messages: Any) -> ChatCall:
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), {"model.name": MODEL})


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


# --- the stream read by the adapter itself ---------------------------------------------------------------------


class CannedServer:
    """An OpenAI-compatible server whose chat answers are given bytes, written piece by piece.

    A piece may be an `asyncio.Event`: the server waits for it before writing on. It records the client port of
    every request, so a test can tell whether connections are reused.
    """

    def __init__(self) -> None:
        self.answers: list[list[bytes | asyncio.Event]] = []
        self.ports: list[int] = []
        self._runner: aiohttp.web.AppRunner | None = None
        self.base_url = ""

    async def chat(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        await request.read()
        self.ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        response = aiohttp.web.StreamResponse(headers={"content-type": "text/event-stream", "x-request-id": "req_c"})
        await response.prepare(request)
        for piece in self.answers.pop(0) if self.answers else [sse_body(text_chunks("hi"))]:
            if isinstance(piece, asyncio.Event):
                await piece.wait()
            else:
                await response.write(piece)
        await response.write_eof()
        return response

    async def __aenter__(self) -> CannedServer:
        app = aiohttp.web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def chunk_json(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "chatcmpl-c", "object": "chat.completion.chunk", "choices": [choice], **extra}


def text_chunks(*pieces: str, finish: str = "stop") -> list[dict[str, Any]]:
    usage = {"prompt_tokens": 3, "completion_tokens": len(pieces)}
    return [
        *(chunk_json({"content": piece}) for piece in pieces),
        chunk_json(finish=finish),
        {"id": "chatcmpl-c", "choices": [], "usage": usage},
    ]


def sse_body(chunks: list[dict[str, Any]], done: bool = True, newline: bytes = b"\n") -> bytes:
    events = [b"data: " + orjson.dumps(chunk) for chunk in chunks] + ([b"data: [DONE]"] if done else [])
    return b"".join(event + newline + newline for event in events)


@pytest.fixture
async def canned() -> AsyncIterator[CannedServer]:
    async with CannedServer() as server:
        yield server


@pytest.fixture(params=SEND_PATHS)
async def canned_provider(canned: CannedServer, provider_env: ProviderEnv, request: pytest.FixtureRequest) -> Provider:
    provider = SPEC.factory({"key": KEY, "base_url": canned.base_url}, provider_env)
    await on_send_path(request.param, provider, chat())
    canned.ports.clear()
    return provider


async def test_each_delta_is_forwarded_before_the_next_chunk_is_sent(
    canned: CannedServer, canned_provider: Provider
) -> None:
    first_seen = asyncio.Event()
    body = sse_body(text_chunks("one ", "two"))
    cut = body.index(b"\n\n") + 2
    canned.answers.append([body[:cut], first_seen, body[cut:]])
    stream = canned_provider.stream_chat(chat())
    assert await asyncio.wait_for(anext(stream), 5) == TextDelta("one ")  # the server holds the rest back
    first_seen.set()
    rest = await collect(stream)
    assert text_of(rest) == "two"
    assert finished(rest).provider_request_id == "req_c"


async def test_crlf_comments_split_reads_and_no_done(canned: CannedServer, canned_provider: Provider) -> None:
    body = b": keep-alive\r\n\r\n" + sse_body(text_chunks("a", "b", "c"), done=False, newline=b"\r\n")
    canned.answers.append([body[i : i + 7] for i in range(0, len(body), 7)])
    events = await collect(canned_provider.stream_chat(chat()))
    assert text_of(events) == "abc"
    done = finished(events)
    assert (done.finish_reason, done.usage.input_tokens, done.usage.output_tokens) == ("stop", 3, 3)


async def test_a_last_event_without_a_blank_line_still_counts(canned: CannedServer, canned_provider: Provider) -> None:
    body = sse_body(text_chunks("x"), done=False) + b"data: [DONE]"
    canned.answers.append([body])
    assert finished(await collect(canned_provider.stream_chat(chat()))).finish_reason == "stop"


async def test_a_refusal_is_text_and_what_follows_done_is_ignored(
    canned: CannedServer, canned_provider: Provider
) -> None:
    chunks = [chunk_json({"content": None, "refusal": "I can't help with that."}), chunk_json(finish="stop")]
    canned.answers.append([sse_body(chunks) + sse_body(text_chunks("late"))])
    events = await collect(canned_provider.stream_chat(chat()))
    assert text_of(events) == "I can't help with that."
    assert finished(events).usage.input_tokens == 0  # no usage chunk before [DONE]


async def test_a_stream_without_a_finish_reason_is_unavailable(canned: CannedServer, canned_provider: Provider) -> None:
    canned.answers.append([sse_body([chunk_json({"content": "cut"})])])
    events, exc = await chat_error(canned_provider)
    assert text_of(events) == "cut"
    assert isinstance(exc, Unavailable)
    assert "finish reason" in exc.message


@pytest.mark.parametrize(
    "bad",
    [
        5,
        ["a list"],
        {"choices": "not a list"},
        chunk_json({"content": 5}),
        chunk_json({"tool_calls": [{"index": "0", "id": "c"}]}),
        chunk_json({"tool_calls": [{"id": "no index"}]}),
        chunk_json(finish=7),  # type: ignore[arg-type]
    ],
)
async def test_a_chunk_of_the_wrong_shape_is_unavailable(
    canned: CannedServer, canned_provider: Provider, bad: Any
) -> None:
    canned.answers.append([sse_body([chunk_json({"content": "ok "}), bad, *text_chunks("never")])])
    events, exc = await chat_error(canned_provider)
    assert text_of(events) == "ok "
    assert isinstance(exc, Unavailable)
    assert "does not match" in exc.message


async def test_an_error_event_without_a_status_is_unavailable(canned: CannedServer, canned_provider: Provider) -> None:
    canned.answers.append([sse_body([{"error": {"message": f"boom {KEY}"}}])])
    _, exc = await chat_error(canned_provider)
    assert isinstance(exc, Unavailable)
    assert "boom [redacted]" in exc.message


async def test_one_connection_serves_stream_after_stream(canned: CannedServer, canned_provider: Provider) -> None:
    canned.answers.extend([[sse_body(text_chunks("a"))], [sse_body(text_chunks("b"))]])
    canned.answers.append([b'data: {"error": {"message": "x", "code": 500}}\n\n'])
    canned.answers.append([sse_body(text_chunks("c"))])
    assert text_of(await collect(canned_provider.stream_chat(chat()))) == "a"
    assert text_of(await collect(canned_provider.stream_chat(chat()))) == "b"
    await chat_error(canned_provider)
    assert text_of(await collect(canned_provider.stream_chat(chat()))) == "c"
    assert len(canned.ports) == 4
    # One connection from the first replay on (a model's first request goes through the SDK's own pool).
    assert len(set(canned.ports[1:])) == 1


# --- transport errors ------------------------------------------------------------------------------------------


async def raw_server(answer: bytes | None) -> asyncio.Server:
    """A TCP server that reads the request, writes `answer` (None: nothing) and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (None, "ServerDisconnectedError"),
        (b"this is not http\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "Bad"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n", "Error"),
    ],
    ids=["hang-up", "not-http", "bad-chunk", "cut-body"],
)
async def test_a_broken_connection_is_unavailable_not_a_timeout(
    provider_env: ProviderEnv, answer: bytes | None, cause: str
) -> None:
    server = await raw_server(answer)
    port = server.sockets[0].getsockname()[1]
    provider = SPEC.factory({"key": KEY, "base_url": f"http://127.0.0.1:{port}/v1"}, provider_env)
    try:
        _, exc = await chat_error(provider)
    finally:
        server.close()
    assert type(exc) is Unavailable
    assert cause in exc.message


async def test_a_refused_connection_is_unavailable(provider_env: ProviderEnv) -> None:
    server = await raw_server(None)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    provider = SPEC.factory({"key": KEY, "base_url": f"http://127.0.0.1:{port}/v1"}, provider_env)
    _, exc = await chat_error(provider)
    assert type(exc) is Unavailable
    assert "ConnectionRefusedError" in exc.message
