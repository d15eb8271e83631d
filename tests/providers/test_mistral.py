"""The `mistral` adapter against the Mistral wire-format emulator, through the real `mistralai` SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
from integration_api.testing.emulators.mistral import MistralEmulator
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.mistral import SPEC
from providers.types import (
    AssistantMessage,
    ChatCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from tests.providers.helpers import collect, finished, text_of, tool_calls_of

KEY = "mistral-secret-key-123"


@pytest.fixture
async def emulator() -> AsyncIterator[MistralEmulator]:
    emulator = MistralEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def provider(emulator: MistralEmulator, provider_env: ProviderEnv) -> Provider:
    return SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)


def chat(*messages: object, **parameters: object) -> ChatCall:
    convo = messages or (UserMessage("Hi there"),)
    return ChatCall("req-1", tuple(convo), {"model.name": "mistral-small-latest", **parameters})  # type: ignore[arg-type]


async def test_text_streams_one_delta_per_chunk(emulator: MistralEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox", input_tokens=7)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat(SystemMessage("Be brief."), UserMessage("Hi"))))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert deltas == script.text_chunks()
    end = finished(events)
    assert end.finish_reason == "stop"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (7, 4)
    assert end.provider_request_id
    sent = emulator.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body["stream"] is True
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


async def test_parallel_tool_calls_are_reassembled(emulator: MistralEmulator, provider: Provider) -> None:
    calls = [ToolCallScript("get_weather", '{"city": "Paris"}'), ToolCallScript("get_time", '{"tz": "CET"}')]
    emulator.enqueue(Script(text="", tool_calls=calls))
    tool = ToolSpec("get_weather", "Weather of a city", {"type": "object", "properties": {"city": {"type": "string"}}})
    events = await collect(provider.stream_chat(_with_tools(chat(), tool)))
    assembled = tool_calls_of(events)
    assert [assembled[0]["name"], assembled[1]["name"]] == ["get_weather", "get_time"]
    assert assembled[0]["arguments"] == '{"city": "Paris"}' and assembled[1]["arguments"] == '{"tz": "CET"}'
    assert assembled[0]["id"] and assembled[0]["id"] != assembled[1]["id"]
    assert finished(events).finish_reason == "tool_calls"
    sent_tools = emulator.requests[-1].body["tools"]
    assert sent_tools[0] == {"type": "function", "function": {**_function(tool)}}


async def test_tool_result_turn_is_sent_in_mistral_shape(emulator: MistralEmulator, provider: Provider) -> None:
    call = ToolCall("abc123XYZ", "get_weather", '{"city": "Paris"}')
    convo = (
        UserMessage("Weather in Paris?"),
        AssistantMessage(tool_calls=(call,)),
        ToolMessage((ToolResult("abc123XYZ", "get_weather", "sunny"),)),
    )
    events = await collect(provider.stream_chat(chat(*convo)))
    assert text_of(events) == emulator.default_script.text
    messages = emulator.requests[-1].body["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == "abc123XYZ"
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert messages[2] == {"role": "tool", "tool_call_id": "abc123XYZ", "name": "get_weather", "content": "sunny"}


async def test_parameters_are_mapped(emulator: MistralEmulator, provider: Provider) -> None:
    parameters = {
        "model.temperature": 0.2,
        "model.top_p": "0.9",
        "model.max_completion_tokens": 50,
        "model.stop": "END, STOP",
        "model.seed": 42,
        "model.tool_choice": "required",
        "model.response_format": '{"type": "json_object"}',
        "model.presence_penalty": 0.1,
        "model.frequency_penalty": 0.3,
    }
    await collect(provider.stream_chat(chat(**parameters)))
    body = emulator.requests[-1].body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 50)
    assert body["stop"] == ["END", "STOP"] and body["random_seed"] == 42 and body["tool_choice"] == "any"
    assert body["response_format"] == {"type": "json_object"}
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.1, 0.3)


async def test_length_finish(emulator: MistralEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="cut short", finish_reason="length"))
    assert finished(await collect(provider.stream_chat(chat()))).finish_reason == "length"


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
    ],
)
async def test_http_errors_are_mapped(
    emulator: MistralEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message=f"bad {KEY}", retry_after=2 if status == 429 else None)))
    with pytest.raises(error) as raised:
        await collect(provider.stream_chat(chat()))
    assert raised.value.upstream_status == status
    assert KEY not in raised.value.message
    if status == 429:
        assert raised.value.retry_after == 2.0


async def test_in_stream_error_after_deltas(emulator: MistralEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(error_event_after_chunks=2, error_event_status=429)))
    events: list[object] = []
    with pytest.raises(ResourceExhausted):
        async for event in provider.stream_chat(chat()):
            events.append(event)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]


async def test_malformed_event_is_unavailable(emulator: MistralEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two", fault=Fault(malformed_after_chunks=1)))
    with pytest.raises(Unavailable):
        await collect(provider.stream_chat(chat()))


async def test_connection_reset_is_unavailable(emulator: MistralEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=1)))
    with pytest.raises(Unavailable):
        await collect(provider.stream_chat(chat()))
    assert len(emulator.requests) == 1  # the SDK does not retry


async def test_read_timeout_is_deadline_exceeded(emulator: MistralEmulator, settings: Settings) -> None:
    clients = ClientCache()
    env = ProviderEnv(settings.model_copy(update={"idle_timeout_s": 0.2}), clients)
    provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env)
    emulator.enqueue(Script(text="one two", fault=Fault(stall_after_chunks=1, stall_s=2.0)))
    with pytest.raises(DeadlineExceeded):
        await collect(provider.stream_chat(chat()))
    await clients.aclose()


async def test_closing_the_stream_closes_upstream(emulator: MistralEmulator, provider: Provider) -> None:
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
    with pytest.raises(InvalidArgument, match=r"model\.top_k"):
        await collect(provider.stream_chat(chat(**{"model.top_k": 5})))


async def test_bad_tool_choice_is_invalid(provider: Provider) -> None:
    with pytest.raises(InvalidArgument):
        await collect(provider.stream_chat(chat(**{"model.tool_choice": "sometimes"})))


async def test_verify_credential(emulator: MistralEmulator, provider: Provider) -> None:
    assert "3 models" in await provider.verify_credential()
    assert emulator.requests[-1].path == "/v1/models"


async def test_verify_credential_rejected(emulator: MistralEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message="Unauthorized")))
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


async def test_clients_are_reused(emulator: MistralEmulator, provider_env: ProviderEnv, clients: ClientCache) -> None:
    credential = {"key": KEY, "base_url": emulator.base_url}
    SPEC.factory(credential, provider_env)
    SPEC.factory(credential, provider_env)
    assert len(clients) == 1


def _with_tools(call: ChatCall, *tools: ToolSpec) -> ChatCall:
    return ChatCall(call.request_id, call.messages, call.parameters, tools)


def _function(tool: ToolSpec) -> dict[str, object]:
    return {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}


async def test_malformed_key_is_invalid(emulator: MistralEmulator, provider_env: ProviderEnv) -> None:
    provider = SPEC.factory({"key": "bad\nkey", "base_url": emulator.base_url}, provider_env)
    with pytest.raises(InvalidArgument) as raised:
        await provider.verify_credential()
    assert "bad" not in raised.value.message


async def test_emulator_refuses_a_request_without_key(emulator: MistralEmulator) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.origin}/v1/models") as response:
        assert response.status == 401
        assert "message" in await response.json()
