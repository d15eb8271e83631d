"""Many conversations at once over one stream: each request is routed back to its own conversation.

Run it with the project's virtualenv (``make venv``; another Python lacks ``integration_api``), from the
repository root, against a running gateway (examples/README.md shows how to start one)::

    INTEGRATION_API_TARGET=127.0.0.1:50051 INTEGRATION_API_KEY=ia_... \\
        .venv/bin/python examples/concurrent_conversations.py
"""

from __future__ import annotations

import asyncio

from integration_api.client import AsyncChatStream, AsyncClient, MessageParam


async def converse(stream: AsyncChatStream, name: str) -> list[str]:
    """A two-turn conversation; its requests interleave on the wire with every other conversation's."""
    messages: list[MessageParam] = []
    replies = []
    for question in (f"Hello, I am {name}.", f"{name} asks a follow-up question."):
        messages.append({"role": "user", "content": question})
        result = await stream.chat(messages, parameters={"simulated_delay_ms": 5}).result()
        messages.append(result.message)
        replies.append(result.text)
    return replies


async def main(target: str, api_key: str | None, conversations: int = 25) -> dict[str, list[str]]:
    names = [f"user-{n}" for n in range(conversations)]
    async with AsyncClient(target, api_key=api_key) as client, client.stream("simulated") as stream:
        transcripts = await asyncio.gather(*(converse(stream, name) for name in names))
    print(f"{conversations} conversations, {2 * conversations} requests, one stream")
    return dict(zip(names, transcripts, strict=True))


if __name__ == "__main__":
    import os

    transcripts = asyncio.run(
        main(os.environ.get("INTEGRATION_API_TARGET", "127.0.0.1:50051"), os.environ.get("INTEGRATION_API_KEY"))
    )
    for name, replies in transcripts.items():
        print(f"{name}: {' | '.join(replies)}")
