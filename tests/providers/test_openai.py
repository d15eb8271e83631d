"""The `openai` adapter, through the real `openai` SDK against the OpenAI wire-format emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
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
from integration_api.testing.emulators.base import Fault, RecordedRequest, Script, ToolCallScript
from integration_api.testing.emulators.openai import OpenAIEmulator, embedding_vector
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.openai import SPEC
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    ModerationCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from tests.providers.helpers import SEND_PATHS, collect, finished, on_send_path, stream_error, text_of, tool_calls_of

KEY = "sk-test-0123456789abcdef"
MODEL = "gpt-4o-mini"


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture(params=SEND_PATHS)
async def provider(emulator: OpenAIEmulator, provider_env: ProviderEnv, request: pytest.FixtureRequest) -> Provider:
    provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)
    await on_send_path(request.param, provider, chat())
    emulator.requests.clear()
    return provider


def chat(*messages: Any, tools: tuple[ToolSpec, ...] = (), params: dict[str, Any] | None = None) -> ChatCall:
    parameters = {"model.name": MODEL, **(params or {})}
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), parameters, tools=tools)


def last_chat(emulator: OpenAIEmulator) -> RecordedRequest:
    return next(r for r in reversed(emulator.requests) if r.path.endswith("/chat/completions"))


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_one_delta_per_chunk(emulator: OpenAIEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox jumps.", input_tokens=7)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat()))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert deltas == script.text_chunks()
    done = finished(events)
    assert done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, len(deltas))
    assert done.provider_request_id.startswith("req_")
    body = last_chat(emulator).body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == MODEL
    assert last_chat(emulator).headers["Authorization"] == f"Bearer {KEY}"


async def test_two_parallel_tool_calls_are_reassembled(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(
        Script(
            text="",
            tool_calls=[
                ToolCallScript("get_weather", '{"city": "Paris"}', id="call_a"),
                ToolCallScript("get_time", '{"zone": "CET"}', id="call_b"),
            ],
        )
    )
    tools = (ToolSpec("get_weather", "Weather now", {"type": "object", "properties": {"city": {"type": "string"}}}),)
    events = await collect(provider.stream_chat(chat(tools=tools, params={"model.tool_choice": "required"})))
    assert tool_calls_of(events) == {
        0: {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_b", "name": "get_time", "arguments": '{"zone": "CET"}'},
    }
    # Arguments arrive in fragments, and only the first delta of a call names it.
    assert sum(1 for e in events if isinstance(e, ToolCallDelta) and e.index == 0 and e.arguments) >= 2
    assert finished(events).finish_reason == "tool_calls"
    body = last_chat(emulator).body
    assert body["tool_choice"] == "required"
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }


@pytest.mark.parametrize("reason", ["length", "content_filter"])
async def test_finish_reasons_are_normalised(emulator: OpenAIEmulator, provider: Provider, reason: str) -> None:
    emulator.enqueue(Script(text="cut short", finish_reason=reason, output_tokens=42))
    done = finished(await collect(provider.stream_chat(chat())))
    assert done.finish_reason == reason
    assert done.usage.output_tokens == 42


async def test_a_tool_result_turn_sends_openai_shaped_messages(emulator: OpenAIEmulator, provider: Provider) -> None:
    call = chat(
        SystemMessage("Be brief."),
        UserMessage("Weather in Paris?"),
        AssistantMessage(tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ToolMessage((ToolResult("call_1", "get_weather", "18C and sunny"),)),
    )
    events = await collect(provider.stream_chat(call))
    assert text_of(events) == "Hello from the emulator."
    assert last_chat(emulator).body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]


async def test_model_parameters_are_sent(emulator: OpenAIEmulator, provider: Provider) -> None:
    parameters = {
        "model.temperature": 0.2,
        "model.top_p": "0.9",
        "model.max_completion_tokens": 100,
        "model.max_tokens": 50.0,
        "model.stop": "END, STOP",
        "model.tool_choice": "none",
        "model.response_format": '{"type": "json_object"}',
        "model.seed": 7,
        "model.user": "user-1",
        "model.frequency_penalty": 0.5,
        "model.presence_penalty": -0.5,
        "model.reasoning_effort": "low",
    }
    await collect(provider.stream_chat(chat(params=parameters)))
    body = last_chat(emulator).body
    assert {key: body[key] for key in body if key not in ("messages", "model", "stream", "stream_options")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "max_tokens": 50,
        "stop": ["END", "STOP"],
        "tool_choice": "none",
        "response_format": {"type": "json_object"},
        "seed": 7,
        "user": "user-1",
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "reasoning_effort": "low",
    }


@pytest.mark.parametrize("parameter", ["model.top_k", "model.thinking", "model.no_such_thing"])
async def test_unsupported_parameters_are_invalid(emulator: OpenAIEmulator, provider: Provider, parameter: str) -> None:
    with pytest.raises(InvalidArgument, match=parameter):
        await collect(provider.stream_chat(chat(params={parameter: 5})))
    assert emulator.requests == []


async def test_model_defaults_when_not_given(emulator: OpenAIEmulator, provider: Provider) -> None:
    await collect(provider.stream_chat(ChatCall("req-1", (UserMessage("hi"),))))
    assert last_chat(emulator).body["model"] == "gpt-4o-mini"


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidArgument),
        (401, Unauthenticated),
        (403, PermissionDenied),
        (404, NotFound),
        (429, ResourceExhausted),
        (500, Unavailable),
        (503, Unavailable),
    ],
)
async def test_http_errors_are_mapped(
    emulator: OpenAIEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="nope", retry_after=2 if status == 429 else None)))
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert "nope" in exc.message
    assert exc.provider_request_id and exc.provider_request_id.startswith("req_")
    assert exc.retry_after == (2.0 if status == 429 else None)


async def test_the_key_never_appears_in_errors(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message=f"Incorrect API key provided: {KEY}.")))
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    assert KEY not in exc.message
    assert KEY not in str(exc)
    assert KEY not in exc.human_message


@pytest.mark.parametrize(("status", "error"), [(500, Unavailable), (429, ResourceExhausted), (400, InvalidArgument)])
async def test_an_error_event_ends_the_stream_after_the_deltas(
    emulator: OpenAIEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(
        Script(text="one two three four", fault=Fault(error_event_after_chunks=2, error_event_status=status))
    )
    events, exc = await chat_error(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]
    assert type(exc) is error


async def test_a_malformed_event_is_unavailable(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(malformed_after_chunks=1)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one "
    assert isinstance(exc, Unavailable)


async def test_a_connection_reset_mid_stream_is_unavailable(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=2)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one two "
    assert isinstance(exc, Unavailable)


@pytest.mark.parametrize("path", SEND_PATHS)
async def test_a_slow_upstream_times_out(emulator: OpenAIEmulator, path: str) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(allowed_base_urls=("http://127.0.0.1:*",), idle_timeout_s=0.2), clients)
    provider = await on_send_path(path, SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env), chat())
    emulator.enqueue(Script(text="one two three", fault=Fault(stall_after_chunks=1, stall_s=5)))
    try:
        events, exc = await chat_error(provider)
    finally:
        await clients.aclose()
    assert text_of(events) == "one "
    assert isinstance(exc, DeadlineExceeded)


async def test_closing_the_stream_closes_the_upstream_connection(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text=" ".join(f"w{i}" for i in range(100)), chunk_delay_s=0.02))
    stream = provider.stream_chat(chat())
    assert isinstance(await anext(stream), TextDelta)
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    for _ in range(100):
        if emulator.requests[-1].client_disconnected:
            break
        await asyncio.sleep(0.02)
    assert emulator.requests[-1].client_disconnected
    assert not emulator.requests[-1].completed


# --- credential and base URL -----------------------------------------------------------------------------------


def test_a_base_url_outside_the_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"key": KEY, "base_url": "https://evil.example.com/v1"}, provider_env)


@pytest.mark.parametrize("credential", [{}, {"key": ""}, {"key": 5}])
def test_a_missing_key_is_invalid(provider_env: ProviderEnv, credential: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="'key'"):
        SPEC.factory(credential, provider_env)


async def test_the_server_side_base_url_is_used(emulator: OpenAIEmulator) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(provider_base_urls={"openai": emulator.base_url}), clients)
    try:
        assert "credential accepted" in await SPEC.factory({"key": KEY}, env).verify_credential()
    finally:
        await clients.aclose()


def test_clients_are_reused_per_credential(
    emulator: OpenAIEmulator, provider_env: ProviderEnv, clients: ClientCache
) -> None:
    for key in (KEY, KEY, "sk-other"):
        SPEC.factory({"key": key, "base_url": emulator.base_url}, provider_env)
    assert len(clients) == 2


# --- unary RPCs ------------------------------------------------------------------------------------------------


async def test_verify_credential_lists_models(emulator: OpenAIEmulator, provider: Provider) -> None:
    assert "4 models" in await provider.verify_credential()
    assert emulator.requests[-1].path == "/v1/models"


async def test_verify_credential_maps_a_rejected_key(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message="Incorrect API key provided")))
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
async def test_embeddings_keep_the_input_keys(
    emulator: OpenAIEmulator, provider: Provider, encoding: str | None
) -> None:
    parameters: dict[str, Any] = {"model.dimensions": 12}
    if encoding is not None:
        parameters["model.encoding_format"] = encoding
    result = await provider.embed(EmbeddingCall({5: "second text", 2: "first"}, parameters))
    assert [vector.index for vector in result.vectors] == [2, 5]
    assert result.vectors[0].values == pytest.approx(embedding_vector("first", 12), abs=1e-6)
    assert result.usage.input_tokens == 3
    body = emulator.requests[-1].body
    assert body["input"] == ["first", "second text"]
    assert body["model"] == "text-embedding-3-small"
    assert body["dimensions"] == 12
    assert body["encoding_format"] == (encoding or "base64")


async def test_embedding_rejects_unknown_parameters(provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.top_k"):
        await provider.embed(EmbeddingCall({0: "x"}, {"model.top_k": 3}))


async def test_embedding_errors_are_mapped(emulator: OpenAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=429, retry_after=1.5)))
    with pytest.raises(ResourceExhausted) as info:
        await provider.embed(EmbeddingCall({0: "x"}))
    assert info.value.retry_after == 1.5


async def test_moderation_returns_category_scores(emulator: OpenAIEmulator, provider: Provider) -> None:
    result = await provider.moderate(ModerationCall("this is forbidden", model="omni-moderation-latest"))
    assert result.scores["violence"] > 0.5
    assert result.scores["hate/threatening"] < 0.5
    assert emulator.requests[-1].path == "/v1/moderations"
    assert emulator.requests[-1].body == {"input": "this is forbidden", "model": "omni-moderation-latest"}


# --- the emulator itself ---------------------------------------------------------------------------------------


async def test_the_emulator_rejects_a_missing_key_and_answers_without_streaming(emulator: OpenAIEmulator) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.base_url}/chat/completions", json=body) as response:
            assert response.status == 401
            assert set((await response.json())["error"]) == {"message", "type", "param", "code"}
        headers = {"Authorization": f"Bearer {KEY}"}
        async with session.post(f"{emulator.base_url}/chat/completions", json=body, headers=headers) as response:
            assert response.status == 200
            assert response.headers["x-request-id"]
            completion = await response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Hello from the emulator."
    assert completion["usage"]["prompt_tokens"] == 11
