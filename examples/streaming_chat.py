"""Streaming chat: print a reply as it is generated, then its finish reason, usage and timings.

Run it with the project's virtualenv (``make venv``; another Python lacks ``integration_api``), from the
repository root, against a running gateway (examples/README.md shows how to start one)::

    INTEGRATION_API_TARGET=127.0.0.1:50051 INTEGRATION_API_KEY=ia_... \\
        .venv/bin/python examples/streaming_chat.py
"""

from __future__ import annotations

import asyncio

from integration_api.client import AsyncClient


async def main(target: str, api_key: str | None) -> str:
    async with AsyncClient(target, api_key=api_key) as client, client.stream("simulated") as stream:
        reply = stream.chat(
            [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "Streaming means every word arrives as soon as it is ready."},
            ],
            model="simulated-1",
            parameters={"temperature": 0.2, "simulated_delay_ms": 30},  # simulated_*: knobs of the simulator
        )
        async for text in reply.text_stream:
            print(text, end="", flush=True)
        result = await reply.result()
        print(f"\n[{result.finish_reason}] {result.usage.total_tokens} tokens, {result.timings.total_ms:.0f} ms")
        return result.text


if __name__ == "__main__":
    import os

    asyncio.run(
        main(os.environ.get("INTEGRATION_API_TARGET", "127.0.0.1:50051"), os.environ.get("INTEGRATION_API_KEY"))
    )
