"""Load generators for the HTTP scenarios, as `LoadJob`s for the same process runner and statistics.

- `OpenAISDKLoad`: the official openai SDK streaming chat completions from a base URL: the OpenAI emulator
  directly (d), the LiteLLM proxy in front of it (e), the gateway's OpenAI-compatible endpoint (f), or the bare
  ASGI pass-through proxy (g);
- `AiohttpLoad`: a bare aiohttp client parsing the SSE itself (d2), the floor for any HTTP client here.

A request's frames are its content chunks plus one for the end of the stream (20 + 1, like the gateway's), its
first frame the first content chunk, its tokens the usage chunk's completion tokens.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from integration_api.loadtest import Budget, LoadStats, StartFn, meter_cpu, prompt_text

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench"


@dataclass(frozen=True)
class _Outcome:
    first_ns: int
    frames: int
    tokens: int


@dataclass(frozen=True)
class OpenAISDKLoad:
    base_url: str
    concurrency: int
    prompt_words: int = 20
    model: str = MODEL
    api_key: str = API_KEY
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (the gateway's X-Provider-Key)

    async def run(self, start: StartFn, stats: LoadStats) -> None:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=60.0,
            default_headers=dict(self.headers),
        )
        messages: Any = [{"role": "user", "content": prompt_text(self.prompt_words)}]

        async def one() -> _Outcome:
            stream = await client.chat.completions.create(
                model=self.model, messages=messages, stream=True, stream_options={"include_usage": True}
            )
            first, frames, tokens = 0, 0, 0
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    frames += 1
                    first = first or time.monotonic_ns()
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
            return _Outcome(first, frames + 1, tokens)

        def code(error: Exception) -> str:
            return str(error.status_code) if isinstance(error, openai.APIStatusError) else type(error).__name__

        try:
            await one()  # connect before the clock starts
            await _drive(start, stats, self.concurrency, one, (openai.APIError,), code)
        finally:
            await client.close()


@dataclass(frozen=True)
class AiohttpLoad:
    base_url: str
    concurrency: int
    prompt_words: int = 20
    model: str = MODEL

    async def run(self, start: StartFn, stats: LoadStats) -> None:
        url = f"{self.base_url}/chat/completions"
        body = orjson.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt_text(self.prompt_words)}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one() -> _Outcome:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    await response.read()
                    raise _HTTPStatus(response.status)
                first, frames, tokens = 0, 0, 0
                async for line in response.content:
                    if not line.startswith(b"data: "):
                        continue
                    payload = line[6:].strip()
                    if payload == b"[DONE]":
                        break
                    event = orjson.loads(payload)
                    choices = event.get("choices")
                    if choices and choices[0]["delta"].get("content"):
                        frames += 1
                        first = first or time.monotonic_ns()
                    if usage := event.get("usage"):
                        tokens = usage["completion_tokens"]
                return _Outcome(first, frames + 1, tokens)

        def code(error: Exception) -> str:
            return str(error.status) if isinstance(error, _HTTPStatus) else type(error).__name__

        try:
            await one()
            await _drive(start, stats, self.concurrency, one, (_HTTPStatus, aiohttp.ClientError), code)
        finally:
            await session.close()


class _HTTPStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def _drive(
    start: StartFn,
    stats: LoadStats,
    concurrency: int,
    one: Any,
    failures: tuple[type[Exception], ...],
    code: Any,
) -> None:
    """`concurrency` lanes calling `one()` back to back within the window; outcomes go to `stats`."""
    window = await start()
    stats.window = window
    budget = Budget(window, None)
    finished = asyncio.Event()
    meter = asyncio.ensure_future(meter_cpu(window, stats, finished))

    async def lane() -> None:
        while budget.take():
            started = time.monotonic_ns()
            try:
                outcome = await one()
            except failures as error:
                stats.record_error(code(error), time.monotonic_ns())
                continue
            end = time.monotonic_ns()
            stats.record_success(started, outcome.first_ns or end, end, outcome.frames, outcome.tokens)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    finished.set()
    await meter
