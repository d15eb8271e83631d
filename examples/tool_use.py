"""A tool-use loop on one stream: the model asks for a tool, we run it, send the result, the model answers.

With a real provider the model decides when to call tools; the simulated provider is told what to "decide"
through its ``simulated_*`` parameters (one set per turn, below). The loop itself is what real code looks like.

Run it with the project's virtualenv (``make venv``; another Python lacks ``integration_api``), from the
repository root, against a running gateway (examples/README.md shows how to start one)::

    INTEGRATION_API_TARGET=127.0.0.1:50051 INTEGRATION_API_KEY=ia_... \\
        .venv/bin/python examples/tool_use.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from integration_api.client import AsyncChatStream, AsyncClient, MessageParam, Tool, ToolCall, ToolMessage, ToolResult

WEATHER = Tool(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]},
)

# What the simulated model does on each turn: first call the tool, then answer.
SIMULATED_TURNS: list[dict[str, Any]] = [
    {"simulated_reply": "", "simulated_tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
    {"simulated_reply": "It is 21 °C and sunny in Paris."},
]


def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


def run_tool(call: ToolCall) -> str:
    if call.name != "get_weather":
        return json.dumps({"error": f"unknown tool {call.name}"})
    return json.dumps(get_weather(**call.parsed_arguments()))


async def answer(stream: AsyncChatStream, question: str) -> str:
    messages: list[MessageParam] = [{"role": "user", "content": question}]
    for parameters in SIMULATED_TURNS:
        result = await stream.chat(messages, tools=[WEATHER], parameters=parameters).result()
        if not result.tool_calls:
            return result.text
        messages.append(result.message)  # the assistant's tool calls, then their results
        messages.append(ToolMessage([ToolResult(call.id, run_tool(call), call.name) for call in result.tool_calls]))
        print("ran", ", ".join(f"{call.name}({call.arguments})" for call in result.tool_calls))
    raise RuntimeError("the model kept calling tools")


async def main(target: str, api_key: str | None) -> str:
    async with AsyncClient(target, api_key=api_key) as client, client.stream("simulated") as stream:
        reply = await answer(stream, "What is the weather in Paris?")
        print(reply)
        return reply


if __name__ == "__main__":
    import os

    asyncio.run(
        main(os.environ.get("INTEGRATION_API_TARGET", "127.0.0.1:50051"), os.environ.get("INTEGRATION_API_KEY"))
    )
