"""The `cohere` adapter against the Cohere v2 wire-format emulator, through the real `cohere` SDK."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from integration_api.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from integration_api.settings import Settings
from integration_api.testing.emulators import Fault, Script, ToolCallScript
from integration_api.testing.emulators.cohere import CohereEmulator
from integration_api.testing.emulators.openai import embedding_vector
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.cohere import SPEC
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    RerankCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from tests.providers.helpers import collect, finished, text_of, tool_calls_of

KEY = "cohere-secret-key-456"


@pytest.fixture
async def emulator() -> AsyncIterator[CohereEmulator]:
    emulator = CohereEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def provider(emulator: CohereEmulator, provider_env: ProviderEnv) -> Provider:
    return SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)


def chat(*messages: object, **parameters: Any) -> ChatCall:
    convo = messages or (UserMessage("Hi there"),)
    return ChatCall("req-1", tuple(convo), {"model.name": "command-a-03-2025", **parameters})  # type: ignore[arg-type]


async def test_text_streams_one_delta_per_chunk(emulator: CohereEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox", input_tokens=7)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat(SystemMessage("Be brief."), UserMessage("Hi"))))
    assert [event.text for event in events if isinstance(event, TextDelta)] == script.text_chunks()
    end = finished(events)
    assert end.finish_reason == "stop"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (7, 4)
    assert end.provider_request_id
    sent = emulator.requests[-1]
    assert sent.path == "/v2/chat"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body["stream"] is True
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


async def test_parallel_tool_calls_are_reassembled(emulator: CohereEmulator, provider: Provider) -> None:
    calls = [ToolCallScript("get_weather", '{"city": "Paris"}'), ToolCallScript("get_time", '{"tz": "CET"}')]
    emulator.enqueue(Script(text="I will look both up.", tool_calls=calls))
    tool = ToolSpec("get_weather", "Weather of a city", {"type": "object", "properties": {"city": {"type": "string"}}})
    events = await collect(provider.stream_chat(dataclasses.replace(chat(), tools=(tool,))))
    assert text_of(events) == "I will look both up."  # the tool plan
    assembled = tool_calls_of(events)
    assert [assembled[0]["name"], assembled[1]["name"]] == ["get_weather", "get_time"]
    assert assembled[0]["arguments"] == '{"city": "Paris"}' and assembled[1]["arguments"] == '{"tz": "CET"}'
    assert assembled[0]["id"] and assembled[0]["id"] != assembled[1]["id"]
    assert finished(events).finish_reason == "tool_calls"
    function = {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}
    assert emulator.requests[-1].body["tools"] == [{"type": "function", "function": function}]


async def test_tool_result_turn_is_sent_in_cohere_shape(emulator: CohereEmulator, provider: Provider) -> None:
    call = ToolCall("get_weather_abc123", "get_weather", '{"city": "Paris"}')
    convo = (
        UserMessage("Weather in Paris?"),
        AssistantMessage(text="I will check the weather.", tool_calls=(call,)),
        ToolMessage((ToolResult("get_weather_abc123", "get_weather", "sunny"),)),
    )
    events = await collect(provider.stream_chat(chat(*convo)))
    assert text_of(events) == emulator.default_script.text
    messages = emulator.requests[-1].body["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_plan"] == "I will check the weather."
    assert messages[1]["tool_calls"] == [
        {
            "id": "get_weather_abc123",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "get_weather_abc123", "content": "sunny"}


async def test_parameters_are_mapped(emulator: CohereEmulator, provider: Provider) -> None:
    parameters = {
        "model.temperature": 0.2,
        "model.top_p": "0.9",
        "model.top_k": 40,
        "model.max_tokens": 50,
        "model.stop": "END, STOP",
        "model.seed": 42,
        "model.tool_choice": "required",
        "model.response_format": '{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}',
        "model.frequency_penalty": 0.3,
    }
    await collect(provider.stream_chat(chat(**parameters)))
    body = emulator.requests[-1].body
    assert (body["temperature"], body["p"], body["k"], body["max_tokens"]) == (0.2, 0.9, 40, 50)
    assert body["stop_sequences"] == ["END", "STOP"] and body["seed"] == 42 and body["tool_choice"] == "REQUIRED"
    assert body["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}
    assert body["frequency_penalty"] == 0.3


@pytest.mark.parametrize(("script_finish", "expected"), [("length", "length"), ("content_filter", "content_filter")])
async def test_other_finish_reasons(
    emulator: CohereEmulator, provider: Provider, script_finish: str, expected: str
) -> None:
    emulator.enqueue(Script(text="cut short", finish_reason=script_finish))
    assert finished(await collect(provider.stream_chat(chat()))).finish_reason == expected


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidArgument),
        (401, Unauthenticated),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidArgument),
        (429, ResourceExhausted),
        (500, Unavailable),
        (503, Unavailable),
        (504, DeadlineExceeded),
    ],
)
async def test_http_errors_are_mapped(
    emulator: CohereEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message=f"bad {KEY}", retry_after=3 if status == 429 else None)))
    with pytest.raises(error) as raised:
        await collect(provider.stream_chat(chat()))
    assert raised.value.upstream_status == status
    assert raised.value.provider_request_id
    assert KEY not in raised.value.message
    if status == 429:
        assert raised.value.retry_after == 3.0


async def test_in_stream_error_after_deltas(emulator: CohereEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(error_event_after_chunks=2, message=f"oops {KEY}")))
    events: list[object] = []
    with pytest.raises(Unavailable) as raised:
        async for event in provider.stream_chat(chat()):
            events.append(event)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]
    assert "oops" in raised.value.message and KEY not in raised.value.message


async def test_malformed_event_is_unavailable(emulator: CohereEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two", fault=Fault(malformed_after_chunks=1)))
    with pytest.raises(Unavailable):
        await collect(provider.stream_chat(chat()))


async def test_connection_reset_is_unavailable(emulator: CohereEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=1)))
    with pytest.raises(Unavailable):
        await collect(provider.stream_chat(chat()))
    assert len(emulator.requests) == 1  # no SDK retry, no stream reconnection


async def test_read_timeout_is_deadline_exceeded(emulator: CohereEmulator, settings: Settings) -> None:
    clients = ClientCache()
    env = ProviderEnv(settings.model_copy(update={"idle_timeout_s": 0.2}), clients)
    provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env)
    emulator.enqueue(Script(text="one two", fault=Fault(stall_after_chunks=1, stall_s=2.0)))
    with pytest.raises(DeadlineExceeded):
        await collect(provider.stream_chat(chat()))
    await clients.aclose()


async def test_closing_the_stream_closes_upstream(emulator: CohereEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="a b c d e f g h", chunk_delay_s=0.05))
    stream = provider.stream_chat(chat())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    for _ in range(100):
        if emulator.requests[-1].client_disconnected:
            break
        await asyncio.sleep(0.01)
    assert emulator.requests[-1].client_disconnected
    assert not emulator.requests[-1].completed


async def test_base_url_outside_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"key": KEY, "base_url": "https://evil.example.com"}, provider_env)


async def test_missing_key_is_invalid(provider_env: ProviderEnv) -> None:
    with pytest.raises(InvalidArgument) as raised:
        SPEC.factory({"base_url": "http://127.0.0.1:1"}, provider_env)
    assert "'key'" in raised.value.message


async def test_unsupported_parameter_is_invalid(provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.user"):
        await collect(provider.stream_chat(chat(**{"model.user": "someone"})))


async def test_unknown_response_format_is_invalid(provider: Provider) -> None:
    with pytest.raises(InvalidArgument):
        await collect(provider.stream_chat(chat(**{"model.response_format": '{"type": "yaml"}'})))


async def test_embedding(emulator: CohereEmulator, provider: Provider) -> None:
    result = await provider.embed(
        EmbeddingCall({3: "second text", 1: "first text"}, {"model.input_type": "search_query"})
    )
    assert [vector.index for vector in result.vectors] == [1, 3]
    assert result.vectors[0].values == pytest.approx(embedding_vector("first text", 8))
    assert result.usage.input_tokens == 4
    body = emulator.requests[-1].body
    assert emulator.requests[-1].path == "/v2/embed"
    assert body["texts"] == ["first text", "second text"] and body["input_type"] == "search_query"
    assert body["model"] == "embed-english-v3.0" and body["embedding_types"] == ["float"]


async def test_embedding_defaults_and_errors(emulator: CohereEmulator, provider: Provider) -> None:
    await provider.embed(EmbeddingCall({0: "text"}))
    assert emulator.requests[-1].body["input_type"] == "search_document"
    emulator.enqueue(Script(fault=Fault(status=429, retry_after=1)))
    with pytest.raises(ResourceExhausted):
        await provider.embed(EmbeddingCall({0: "text"}))
    with pytest.raises(InvalidArgument):
        await provider.embed(EmbeddingCall({}))


async def test_reranking(emulator: CohereEmulator, provider: Provider) -> None:
    documents = {10: "cats purr softly", 20: "dogs bark at cats and birds", 30: "fish swim"}
    result = await provider.rerank(RerankCall("dogs and cats", documents, {"model.top_n": 2}))
    assert [(score.index, score.content) for score in result.scores] == [(20, documents[20]), (10, documents[10])]
    assert result.scores[0].relevance_score > result.scores[1].relevance_score
    body = emulator.requests[-1].body
    assert body["model"] == "rerank-english-v3.0" and body["top_n"] == 2 and body["query"] == "dogs and cats"


async def test_verify_credential(emulator: CohereEmulator, provider: Provider) -> None:
    assert "accepted" in await provider.verify_credential()
    assert emulator.requests[-1].path == "/v1/models"
    emulator.enqueue(Script(fault=Fault(status=401, message="invalid api token")))
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


async def test_malformed_key_is_invalid(emulator: CohereEmulator, provider_env: ProviderEnv) -> None:
    provider = SPEC.factory({"key": "bad\nkey", "base_url": emulator.base_url}, provider_env)
    with pytest.raises(InvalidArgument) as raised:
        await provider.verify_credential()
    assert "bad" not in raised.value.message


async def test_emulator_refuses_a_request_without_key(emulator: CohereEmulator) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.origin}/v1/models") as response:
        assert response.status == 401
        assert "message" in await response.json()
