"""The `anthropic` adapter, through the real `anthropic` SDK against the Anthropic wire-format emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
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
from integration_api.testing.emulators import emulator_for
from integration_api.testing.emulators.anthropic import AnthropicEmulator
from integration_api.testing.emulators.base import Fault, RecordedRequest, Script, ToolCallScript
from providers.anthropic import DEFAULT_MAX_TOKENS, DEFAULT_MODEL, SPEC
from providers.base import CHAT_RPCS, Provider, ProviderEnv
from providers.clients import ClientCache
from providers.types import (
    AssistantMessage,
    ChatCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from tests.providers.helpers import collect, finished, stream_error, text_of, tool_calls_of

KEY = "sk-ant-api03-test-0123456789abcdef"
MODEL = "claude-haiku-4-5-20251001"


@pytest.fixture
async def emulator() -> AsyncIterator[AnthropicEmulator]:
    async with AnthropicEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
def provider(emulator: AnthropicEmulator, provider_env: ProviderEnv) -> Provider:
    return SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)


def chat(*messages: Any, tools: tuple[ToolSpec, ...] = (), **parameters: Any) -> ChatCall:
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), {"model.name": MODEL, **parameters}, tools=tools)


def last_messages(emulator: AnthropicEmulator) -> RecordedRequest:
    return next(r for r in reversed(emulator.requests) if r.path == "/v1/messages")


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


def sent_key(recorded: RecordedRequest) -> str:
    """The API key as the SDK sent it (x-api-key, or a bearer token as recent SDKs do)."""
    headers = {name.lower(): value for name, value in recorded.headers.items()}
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_one_delta_per_chunk(emulator: AnthropicEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox jumps.", input_tokens=7)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat()))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert deltas == script.text_chunks()
    done = finished(events)
    assert done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, len(deltas))
    assert done.provider_request_id.startswith("req_")
    recorded = last_messages(emulator)
    assert recorded.body == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        "stream": True,
    }
    assert sent_key(recorded) == KEY
    assert "anthropic-version" in recorded.headers


async def test_two_parallel_tool_calls_are_reassembled(emulator: AnthropicEmulator, provider: Provider) -> None:
    emulator.enqueue(
        Script(
            text="Let me check.",
            tool_calls=[
                ToolCallScript("get_weather", '{"city": "Paris"}', id="toolu_a"),
                ToolCallScript("get_time", '{"zone": "CET"}', id="toolu_b"),
            ],
        )
    )
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = (ToolSpec("get_weather", "Weather now", schema), ToolSpec("get_time", parameters={}))
    events = await collect(provider.stream_chat(chat(tools=tools, **{"model.tool_choice": "required"})))
    assert text_of(events) == "Let me check."
    # The text block is content block 0, yet the tool calls are numbered 0 and 1: tool calls count alone.
    assert tool_calls_of(events) == {
        0: {"id": "toolu_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_b", "name": "get_time", "arguments": '{"zone": "CET"}'},
    }
    tool_deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [bool(e.id) for e in tool_deltas if e.index == 0] == [True, False, False]  # only the first names it
    assert sum(1 for e in tool_deltas if e.index == 0 and e.arguments) >= 2
    done = finished(events)
    assert done.finish_reason == "tool_calls"
    assert done.usage.output_tokens == 3 + 2
    body = last_messages(emulator).body
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather now", "input_schema": schema},
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]


@pytest.mark.parametrize("reason", ["length", "content_filter", "stop"])
async def test_finish_reasons_are_normalised(emulator: AnthropicEmulator, provider: Provider, reason: str) -> None:
    emulator.enqueue(Script(text="cut short", finish_reason=reason, output_tokens=42))
    done = finished(await collect(provider.stream_chat(chat())))
    assert done.finish_reason == reason
    assert done.usage.output_tokens == 42


async def test_a_tool_result_turn_sends_anthropic_shaped_messages(
    emulator: AnthropicEmulator, provider: Provider
) -> None:
    call = chat(
        SystemMessage("Be brief."),
        UserMessage("Weather in Paris?"),
        AssistantMessage(
            text="Checking.",
            tool_calls=(
                ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("toolu_2", "get_time", ""),
            ),
        ),
        ToolMessage((ToolResult("toolu_1", "get_weather", "18C and sunny"), ToolResult("toolu_2", "get_time", "9:00"))),
        SystemMessage("Answer in French."),
        UserMessage("And tomorrow?"),
    )
    events = await collect(provider.stream_chat(call))
    assert text_of(events) == "Hello from the emulator."
    body = last_messages(emulator).body
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        # The tool results and the next user message are one user turn: the API wants roles to alternate.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "9:00"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


async def test_consecutive_user_messages_are_merged(emulator: AnthropicEmulator, provider: Provider) -> None:
    await collect(provider.stream_chat(chat(UserMessage("one"), UserMessage(""), UserMessage("two"))))
    assert last_messages(emulator).body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
async def test_tool_call_arguments_must_be_a_json_object(
    emulator: AnthropicEmulator, provider: Provider, arguments: str
) -> None:
    call = chat(UserMessage("hi"), AssistantMessage(tool_calls=(ToolCall("toolu_1", "f", arguments),)))
    with pytest.raises(InvalidArgument, match="toolu_1"):
        await collect(provider.stream_chat(call))
    assert emulator.requests == []


async def test_model_parameters_are_sent(emulator: AnthropicEmulator, provider: Provider) -> None:
    parameters: dict[str, Any] = {
        "model.temperature": 0.2,
        "model.top_p": "0.9",
        "model.top_k": 40.0,
        "model.max_completion_tokens": 100,
        "model.max_tokens": 50,
        "model.stop": "END, STOP",
        "model.tool_choice": "none",
        "model.user": "user-1",
        "model.thinking": '{"type": "enabled", "budget_tokens": 1024}',
    }
    await collect(provider.stream_chat(chat(**parameters)))
    body = last_messages(emulator).body
    assert {key: body[key] for key in body if key not in ("messages", "model", "stream")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 100,  # max_completion_tokens wins over the older name
        "stop_sequences": ["END", "STOP"],
        "tool_choice": {"type": "none"},
        "metadata": {"user_id": "user-1"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }


@pytest.mark.parametrize(
    ("value", "thinking", "max_tokens"),
    [
        (2048, {"type": "enabled", "budget_tokens": 2048}, DEFAULT_MAX_TOKENS),
        ("16000", {"type": "enabled", "budget_tokens": 16000}, 16000 + DEFAULT_MAX_TOKENS),
        ({"type": "enabled", "budget_tokens": 1024}, {"type": "enabled", "budget_tokens": 1024}, DEFAULT_MAX_TOKENS),
        ("adaptive", {"type": "adaptive"}, DEFAULT_MAX_TOKENS),
        ('{"type": "disabled"}', {"type": "disabled"}, DEFAULT_MAX_TOKENS),
    ],
)
async def test_thinking_forms(
    emulator: AnthropicEmulator, provider: Provider, value: Any, thinking: dict[str, Any], max_tokens: int
) -> None:
    await collect(provider.stream_chat(chat(**{"model.thinking": value})))
    body = last_messages(emulator).body
    assert body["thinking"] == thinking
    assert body["max_tokens"] == max_tokens


@pytest.mark.parametrize("value", ["lots", True, [1], {"budget_tokens": 5}, 1.5])
async def test_invalid_thinking_is_rejected(emulator: AnthropicEmulator, provider: Provider, value: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.thinking"):
        await collect(provider.stream_chat(chat(**{"model.thinking": value})))
    assert emulator.requests == []


@pytest.mark.parametrize(
    "parameter",
    [
        "model.seed",
        "model.frequency_penalty",
        "model.presence_penalty",
        "model.response_format",
        "model.reasoning_effort",
        "model.no_such_thing",
    ],
)
async def test_unsupported_parameters_are_invalid(
    emulator: AnthropicEmulator, provider: Provider, parameter: str
) -> None:
    unsupported: dict[str, Any] = {parameter: 5}
    with pytest.raises(InvalidArgument, match=parameter):
        await collect(provider.stream_chat(chat(**unsupported)))
    assert emulator.requests == []


async def test_model_defaults_when_not_given(emulator: AnthropicEmulator, provider: Provider) -> None:
    await collect(provider.stream_chat(ChatCall("req-1", (UserMessage("hi"),))))
    assert last_messages(emulator).body["model"] == DEFAULT_MODEL


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "error"),
    [
        (400, "invalid_request_error", InvalidArgument),
        (401, "authentication_error", Unauthenticated),
        (403, "permission_error", PermissionDenied),
        (404, "not_found_error", NotFound),
        (429, "rate_limit_error", ResourceExhausted),
        (500, "api_error", Unavailable),
        (503, "api_error", Unavailable),
        (529, "overloaded_error", Unavailable),
    ],
)
async def test_http_errors_are_mapped(
    emulator: AnthropicEmulator, provider: Provider, status: int, error_type: str, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="nope", retry_after=2 if status == 429 else None)))
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert "nope" in exc.message
    assert error_type in exc.message
    assert exc.provider_request_id and exc.provider_request_id.startswith("req_")
    assert exc.retry_after == (2.0 if status == 429 else None)


async def test_the_key_never_appears_in_errors(emulator: AnthropicEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message=f"invalid x-api-key: {KEY}")))
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    for text in (exc.message, str(exc), repr(exc), exc.human_message):
        assert KEY not in text


@pytest.mark.parametrize(
    ("status", "error"), [(529, Unavailable), (500, Unavailable), (429, ResourceExhausted), (400, InvalidArgument)]
)
async def test_an_error_event_ends_the_stream_after_the_deltas(
    emulator: AnthropicEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(
        Script(text="one two three four", fault=Fault(error_event_after_chunks=2, error_event_status=status))
    )
    events, exc = await chat_error(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]
    assert type(exc) is error
    assert exc.provider_request_id and exc.provider_request_id.startswith("req_")


async def test_an_overloaded_error_event_is_unavailable(emulator: AnthropicEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="a b", fault=Fault(error_event_after_chunks=1, error_event_status=529)))
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unavailable)
    assert "overloaded_error" in exc.message
    assert exc.upstream_status == 529


async def test_a_malformed_event_is_unavailable(emulator: AnthropicEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(malformed_after_chunks=1)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one "
    assert isinstance(exc, Unavailable)


async def test_a_connection_reset_mid_stream_is_unavailable(emulator: AnthropicEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=2)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one two "
    assert isinstance(exc, Unavailable)


async def test_an_unreachable_upstream_is_unavailable(provider_env: ProviderEnv) -> None:
    emulator = AnthropicEmulator()
    base_url = await emulator.start()
    await emulator.stop()  # nothing listens there any more
    provider = SPEC.factory({"key": KEY, "base_url": base_url}, provider_env)
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unavailable)


async def test_a_slow_upstream_times_out(emulator: AnthropicEmulator) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(allowed_base_urls=("http://127.0.0.1:*",), idle_timeout_s=0.2), clients)
    provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env)
    emulator.enqueue(Script(text="one two three", fault=Fault(stall_after_chunks=1, stall_s=5)))
    try:
        events, exc = await chat_error(provider)
    finally:
        await clients.aclose()
    assert text_of(events) == "one "
    assert isinstance(exc, DeadlineExceeded)


async def test_closing_the_stream_closes_the_upstream_connection(
    emulator: AnthropicEmulator, provider: Provider
) -> None:
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


# --- credential, base URL, registry ----------------------------------------------------------------------------


def test_a_base_url_outside_the_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"key": KEY, "base_url": "https://evil.example.com"}, provider_env)


@pytest.mark.parametrize("credential", [{}, {"key": ""}, {"key": 5}])
def test_a_missing_key_is_invalid(provider_env: ProviderEnv, credential: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="'key'"):
        SPEC.factory(credential, provider_env)


async def test_the_server_side_base_url_is_used(emulator: AnthropicEmulator) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(provider_base_urls={"anthropic": emulator.base_url}), clients)
    try:
        assert "credential accepted" in await SPEC.factory({"key": KEY}, env).verify_credential()
    finally:
        await clients.aclose()


def test_clients_are_reused_per_credential(
    emulator: AnthropicEmulator, provider_env: ProviderEnv, clients: ClientCache
) -> None:
    for key in (KEY, KEY, "sk-ant-other"):
        SPEC.factory({"key": key, "base_url": emulator.base_url}, provider_env)
    assert len(clients) == 2


def test_the_spec_serves_the_chat_rpcs() -> None:
    # default_registry() finds the adapter as `providers.<name>`: the module's name must be the provider's.
    assert SPEC.name == "anthropic" == SPEC.factory.__module__.removeprefix("providers.")
    assert SPEC.rpcs == CHAT_RPCS


# --- unary RPCs ------------------------------------------------------------------------------------------------


async def test_verify_credential_lists_models(emulator: AnthropicEmulator, provider: Provider) -> None:
    assert "3 models" in await provider.verify_credential()
    recorded = emulator.requests[-1]
    assert (recorded.method, recorded.path) == ("GET", "/v1/models")
    assert sent_key(recorded) == KEY


@pytest.mark.parametrize(("status", "error"), [(401, Unauthenticated), (529, Unavailable)])
async def test_verify_credential_maps_errors(
    emulator: AnthropicEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="rejected")))
    with pytest.raises(error):
        await provider.verify_credential()


# --- the emulator itself ---------------------------------------------------------------------------------------


async def test_the_emulator_is_registered() -> None:
    assert isinstance(emulator_for("anthropic"), AnthropicEmulator)


async def test_the_emulator_answers_a_whole_message(emulator: AnthropicEmulator) -> None:
    emulator.enqueue(Script(text="Hi there.", tool_calls=[ToolCallScript("f", '{"x": 1}', id="toolu_f")]))
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=emulator.base_url, max_retries=0)
    async with client:
        response = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        message = await response.parse()
    assert response.headers["request-id"].startswith("req_")
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].model_dump(include={"id", "name", "input"}) == {
        "id": "toolu_f",
        "name": "f",
        "input": {"x": 1},
    }
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)


@pytest.mark.parametrize(
    ("headers", "body", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, {}, 401, "authentication_error"),
        ({"x-api-key": KEY}, {}, 400, "invalid_request_error"),
        ({"x-api-key": KEY, "anthropic-version": "2023-06-01"}, {"model": MODEL, "messages": []}, 400, None),
    ],
)
async def test_the_emulator_checks_headers_and_body(
    emulator: AnthropicEmulator, headers: dict[str, str], body: dict[str, Any], status: int, error_type: str | None
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{emulator.base_url}/v1/messages", headers=headers, json=body)
    assert response.status_code == status
    assert response.headers["request-id"].startswith("req_")
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == (error_type or "invalid_request_error")
    if error_type is None:
        assert "max_tokens" in error["error"]["message"]


async def test_the_emulator_streams_named_events(emulator: AnthropicEmulator) -> None:
    emulator.enqueue(Script(text="a b", tool_calls=[ToolCallScript("f", '{"x": 1}')]))
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{emulator.base_url}/v1/messages", headers=headers, json=body)
    names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
