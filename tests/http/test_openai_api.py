"""The official `openai` Python SDK (sync and async) against the gateway's OpenAI-compatible API on /v1."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from integration_api.testing.emulators.base import Script, ToolCallScript
from integration_api.testing.emulators.openai import OpenAIEmulator
from providers.simulated import EMBEDDING_DIMENSIONS
from tests.http.conftest import HttpGateway

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]


def async_client(gateway: HttpGateway, **options: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, **options)  # type: ignore[arg-type]


async def test_async_streaming_text_with_usage(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    stream = await client.chat.completions.create(
        model="simulated/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.role for c in chunks[1:] if c.choices] == [None] * (len(chunks) - 2)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"simulated/echo"}
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])  # usage only on the last chunk, whose choices are empty
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)
    assert chunks[-1].usage.total_tokens == 6
    await client.close()


async def test_streaming_without_include_usage_sends_no_usage(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    stream = await client.chat.completions.create(model="simulated/echo", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    await client.close()


async def test_sync_client_streams_and_completes(http_gateway: HttpGateway) -> None:
    def run() -> tuple[str, str | None]:
        with openai.OpenAI(base_url=http_gateway.base_url, api_key=http_gateway.api_key, max_retries=0) as client:
            stream = client.chat.completions.create(model="simulated/echo", messages=HELLO, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            completion = client.chat.completions.create(model="simulated/echo", messages=HELLO)
            return streamed, completion.choices[0].message.content

    # The sync client blocks: it runs in a thread so the server keeps serving on this loop.
    assert await asyncio.to_thread(run) == ("hello there world", "hello there world")


async def test_non_streaming_completion(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    completion = await client.chat.completions.create(model="simulated/echo", messages=HELLO, max_tokens=2)
    assert completion.object == "chat.completion"
    assert completion.model == "simulated/echo"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "hello there ",
        "length",
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    await client.close()


TOOL_CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris"}},
    {"name": "get_time", "arguments": {"zone": "Europe/Paris"}},
]


async def test_two_parallel_tool_calls_streamed(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    stream = await client.chat.completions.create(
        model="simulated/echo",
        messages=[{"role": "user", "content": "weather and time"}],
        stream=True,
        extra_body={"simulated_tool_calls": TOOL_CALLS, "simulated_reply": ""},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            assert delta.function is not None
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [t["arguments"] for t in TOOL_CALLS]
    assert calls[0]["id"] and calls[1]["id"] and calls[0]["id"] != calls[1]["id"]
    await client.close()


async def test_two_tool_calls_non_streaming(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    completion = await client.chat.completions.create(
        model="simulated/echo",
        messages=[{"role": "user", "content": "weather and time"}],
        extra_body={"simulated_tool_calls": TOOL_CALLS, "simulated_reply": ""},
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    functions = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]  # type: ignore[union-attr]
    assert functions == [(t["name"], t["arguments"]) for t in TOOL_CALLS]
    await client.close()


async def test_embeddings_float_and_base64(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    as_float = await client.embeddings.create(
        model="simulated/embed", input=["one", "two words"], encoding_format="float"
    )
    as_default = await client.embeddings.create(
        model="simulated/embed", input=["one", "two words"]
    )  # base64 on the wire
    assert [e.index for e in as_float.data] == [0, 1]
    assert all(len(e.embedding) == EMBEDDING_DIMENSIONS for e in as_float.data)
    for a, b in zip(as_float.data, as_default.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert as_float.usage.prompt_tokens == 3
    await client.close()


async def test_models_lists_each_enabled_provider(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway)
    ids = [model.id async for model in client.models.list()]
    assert "simulated/*" in ids and "openai/*" in ids
    assert len(ids) == len(list(http_gateway.running.server.registry))
    await client.close()


async def test_conversation_with_tool_results_reaches_the_vendor_mapped(http_gateway: HttpGateway) -> None:
    """System/developer, text parts, an assistant tool call and its tool result, parameters and extra_body fields
    arrive at an OpenAI emulator as the OpenAI adapter sends them."""
    async with OpenAIEmulator() as emulator:
        emulator.enqueue(Script(text="It is sunny."))
        client = async_client(
            http_gateway,
            default_headers={"X-Provider-Credential": json.dumps({"key": "sk-test", "base_url": emulator.base_url})},
        )
        completion = await client.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c":"P"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            temperature=0.25,
            stop="END",
            seed=7,
        )
        assert completion.choices[0].message.content == "It is sunny."
        sent = emulator.requests[-1].body
        assert sent["model"] == "gpt-4o-mini"
        assert sent["temperature"] == 0.25 and sent["seed"] == 7 and sent["stop"] == ["END"]
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["system", "user", "assistant", "tool"]
        assert sent["messages"][1]["content"] == "Weather in Paris?"
        assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "weather"
        assert sent["messages"][3]["tool_call_id"] == "call_1"
        assert sent["tools"][0]["function"]["name"] == "weather"
        await client.close()


async def test_openai_adapter_streams_tool_calls_through(http_gateway: HttpGateway) -> None:
    async with OpenAIEmulator() as emulator:
        emulator.enqueue(Script(text="", tool_calls=[ToolCallScript("a", '{"x": 1}'), ToolCallScript("b", '{"y": 2}')]))
        client = async_client(http_gateway, default_headers={"X-Provider-Key": "sk-test"})
        credential = json.dumps({"base_url": emulator.base_url})
        stream = await client.chat.completions.create(
            model="openai/gpt-4o",
            messages=HELLO,
            stream=True,
            extra_headers={"X-Provider-Credential": credential},
        )
        names: dict[int, str] = {}
        async for chunk in stream:
            for delta in chunk.choices[0].delta.tool_calls or ():
                names[delta.index] = names.get(delta.index, "") + ((delta.function and delta.function.name) or "")
        assert names == {0: "a", 1: "b"}
        assert emulator.requests[-1].headers["Authorization"] == "Bearer sk-test"
        await client.close()


async def test_provider_key_header_reaches_the_provider(http_gateway: HttpGateway) -> None:
    client = async_client(http_gateway, default_headers={"X-Provider-Key": "pk-1"})
    await client.chat.completions.create(model="probe/x", messages=HELLO)
    assert http_gateway.running.probe.credentials[-1] == {"key": "pk-1"}
    await client.close()


async def test_keep_alive_reuses_one_connection(http_gateway: HttpGateway) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as http:
        headers = {"authorization": f"Bearer {http_gateway.api_key}"}
        ports = set()
        for _ in range(3):
            response = await http.post(
                f"{http_gateway.base_url}/chat/completions",
                headers=headers,
                json={"model": "simulated/echo", "messages": HELLO, "stream": True},
                extensions={"trace": None},
            )
            assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
            assert response.headers.get("connection", "keep-alive") != "close"
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
        assert len(ports) == 1
