"""The `gemini` adapter, through the real `google-genai` SDK against the Gemini wire-format emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.genai import errors, types

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
from integration_api.testing.emulators.gemini import GeminiEmulator
from integration_api.testing.emulators.openai import embedding_vector
from providers import _genai_wire as wire
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.gemini import SPEC, gateway_error
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from tests.providers.helpers import collect, finished, stream_error, text_of, tool_calls_of

KEY = "AIzaSy-test-0123456789abcdef"
MODEL = "gemini-2.5-flash"
SKIP_SIGNATURE = "skip_thought_signature_validator"


@pytest.fixture
async def emulator() -> AsyncIterator[GeminiEmulator]:
    async with GeminiEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
def provider(emulator: GeminiEmulator, provider_env: ProviderEnv) -> Provider:
    return SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)


def chat(*messages: Any, tools: tuple[ToolSpec, ...] = (), params: dict[str, Any] | None = None) -> ChatCall:
    parameters = {"model.name": MODEL, **(params or {})}
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), parameters, tools=tools)


def last_generate(emulator: GeminiEmulator) -> RecordedRequest:
    return next(r for r in reversed(emulator.requests) if r.path.endswith(":streamGenerateContent"))


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_one_delta_per_chunk(emulator: GeminiEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox jumps.", input_tokens=7)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat()))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert deltas == script.text_chunks()
    done = finished(events)
    assert done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, len(deltas))
    assert done.provider_request_id.startswith("resp-")
    request = last_generate(emulator)
    assert request.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert request.query == {"alt": "sse"}
    assert request.headers["x-goog-api-key"] == KEY
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}]


async def test_two_parallel_tool_calls_are_reassembled(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(
        Script(
            text="",
            tool_calls=[
                ToolCallScript("get_weather", '{"city": "Paris"}'),
                ToolCallScript("get_time", '{"zone": "CET"}', id="fc_b"),
            ],
        )
    )
    tools = (ToolSpec("get_weather", "Weather now", {"type": "object", "properties": {"city": {"type": "string"}}}),)
    events = await collect(provider.stream_chat(chat(tools=tools, params={"model.tool_choice": "required"})))
    # Gemini sends each call whole: one delta per call; a call without an id gets a generated one.
    assert tool_calls_of(events) == {
        0: {"id": "call_0", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "fc_b", "name": "get_time", "arguments": '{"zone": "CET"}'},
    }
    done = finished(events)
    assert done.finish_reason == "tool_calls"
    assert done.usage.output_tokens == 2
    body = last_generate(emulator).body
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"
    assert declaration["description"] == "Weather now"
    schema = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    assert schema == {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.mark.parametrize("reason", ["length", "content_filter"])
async def test_finish_reasons_are_normalised(emulator: GeminiEmulator, provider: Provider, reason: str) -> None:
    emulator.enqueue(Script(text="cut short", finish_reason=reason, output_tokens=42))
    done = finished(await collect(provider.stream_chat(chat())))
    assert done.finish_reason == reason
    assert done.usage.output_tokens == 42


async def test_a_tool_result_turn_sends_gemini_shaped_contents(emulator: GeminiEmulator, provider: Provider) -> None:
    call = chat(
        SystemMessage("Be brief."),
        UserMessage("Weather in Paris and Rome?"),
        AssistantMessage(
            text="Checking.",
            tool_calls=(
                ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_2", "get_weather", '{"city": "Rome"}'),
            ),
        ),
        ToolMessage((ToolResult("call_1", "get_weather", "18C and sunny"), ToolResult("call_2", "", '{"temp": 21}'))),
        UserMessage("And tomorrow?"),
    )
    events = await collect(provider.stream_chat(call))
    assert text_of(events) == "Hello from the emulator."
    body = last_generate(emulator).body
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SKIP_SIGNATURE,
                },
                {"functionCall": {"id": "call_2", "name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            # The results and the next question share one user turn; a result's missing name is looked up.
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"output": "18C and sunny"}}},
                {"functionResponse": {"id": "call_2", "name": "get_weather", "response": {"temp": 21}}},
                {"text": "And tomorrow?"},
            ],
        },
    ]


async def test_model_parameters_are_sent(emulator: GeminiEmulator, provider: Provider) -> None:
    parameters = {
        "model.temperature": 0.2,
        "model.top_p": "0.9",
        "model.top_k": 40,
        "model.max_completion_tokens": 100,
        "model.max_tokens": 50.0,
        "model.stop": "END, STOP",
        "model.seed": 7,
        "model.frequency_penalty": 0.5,
        "model.presence_penalty": -0.5,
        "model.thinking": 1024,
        "model.response_format": '{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}',
    }
    await collect(provider.stream_chat(chat(params=parameters)))
    config = last_generate(emulator).body["generationConfig"]
    thinking = config.pop("thinkingConfig")
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 1024
    assert config == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 100,  # max_completion_tokens wins over the legacy max_tokens
        "stopSequences": ["END", "STOP"],
        "seed": 7,
        "frequencyPenalty": 0.5,
        "presencePenalty": -0.5,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"model.reasoning_effort": "low"}, {"thinkingLevel": "LOW"}),
        ({"model.reasoning_effort": "none"}, {"thinkingBudget": 0}),
        ({"model.thinking": False}, {"thinkingBudget": 0}),
        ({"model.thinking": '{"type": "enabled", "budget_tokens": 2048}'}, {"thinkingBudget": 2048}),
        ({"model.thinking": "true"}, {"thinkingBudget": -1}),
    ],
)
async def test_thinking_parameters(
    emulator: GeminiEmulator, provider: Provider, parameters: dict[str, Any], expected: dict[str, Any]
) -> None:
    await collect(provider.stream_chat(chat(params=parameters)))
    thinking = last_generate(emulator).body["generationConfig"]["thinkingConfig"]
    camel = {"thinking_budget": "thinkingBudget", "thinking_level": "thinkingLevel"}
    assert {camel.get(key, key): value for key, value in thinking.items()} == expected


async def test_json_object_and_tool_choice_none(emulator: GeminiEmulator, provider: Provider) -> None:
    params = {"model.response_format": {"type": "json_object"}, "model.tool_choice": "none"}
    await collect(provider.stream_chat(chat(tools=(ToolSpec("noop"),), params=params)))
    body = last_generate(emulator).body
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert body["tools"] == [{"functionDeclarations": [{"name": "noop"}]}]


@pytest.mark.parametrize(
    "parameters",
    [
        {"model.user": "u-1"},
        {"model.no_such_thing": 5},
        {"model.tool_choice": "sometimes"},
        {"model.reasoning_effort": "low", "model.thinking": 100},
        {"model.thinking": "lots"},
        {"model.response_format": '{"type": "xml"}'},
        {"model.response_format": '{"type": "json_schema"}'},
    ],
)
async def test_unsupported_parameters_are_invalid(
    emulator: GeminiEmulator, provider: Provider, parameters: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        await collect(provider.stream_chat(chat(params=parameters)))
    assert emulator.requests == []


async def test_bad_tool_call_arguments_are_invalid(emulator: GeminiEmulator, provider: Provider) -> None:
    call = chat(UserMessage("hi"), AssistantMessage(tool_calls=(ToolCall("c1", "f", "[1, 2]"),)))
    with pytest.raises(InvalidArgument, match="JSON object"):
        await collect(provider.stream_chat(call))
    assert emulator.requests == []


async def test_model_defaults_when_not_given(emulator: GeminiEmulator, provider: Provider) -> None:
    await collect(provider.stream_chat(ChatCall("req-1", (UserMessage("hi"),))))
    assert last_generate(emulator).path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


async def _events_of(*chunks: types.GenerateContentResponse) -> list[Any]:
    async def stream() -> AsyncIterator[types.GenerateContentResponse]:
        for chunk in chunks:
            yield chunk

    return await collect(wire.chat_events(stream(), []))


async def test_thoughts_are_skipped_and_counted_as_output() -> None:
    parts = [types.Part(text="pondering", thought=True), types.Part(text="Hi")]
    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=4, candidates_token_count=2, thoughts_token_count=10
    )
    events = await _events_of(
        types.GenerateContentResponse(candidates=[types.Candidate(content=types.Content(parts=parts))]),
        types.GenerateContentResponse(
            candidates=[types.Candidate(finish_reason=types.FinishReason.STOP)], usage_metadata=usage
        ),
    )
    assert text_of(events) == "Hi"
    assert (finished(events).usage.input_tokens, finished(events).usage.output_tokens) == (4, 12)


async def test_a_blocked_prompt_finishes_with_content_filter() -> None:
    feedback = types.GenerateContentResponsePromptFeedback(block_reason=types.BlockedReason.SAFETY)
    events = await _events_of(types.GenerateContentResponse(prompt_feedback=feedback))
    assert finished(events).finish_reason == "content_filter"


async def test_a_stream_without_a_finish_reason_is_unavailable() -> None:
    chunk = types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(parts=[types.Part(text="Hi")]))]
    )
    with pytest.raises(Unavailable, match="finish reason"):
        await _events_of(chunk)


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
        (504, DeadlineExceeded),
    ],
)
async def test_http_errors_are_mapped(
    emulator: GeminiEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="nope", retry_after=2 if status == 429 else None)))
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert "nope" in exc.message
    assert exc.retry_after == (2.0 if status == 429 else None)  # from the RetryInfo detail


async def test_an_invalid_key_is_unauthenticated(emulator: GeminiEmulator, provider_env: ProviderEnv) -> None:
    # The Gemini API answers a bad key with 400 INVALID_ARGUMENT; its ErrorInfo reason says API_KEY_INVALID.
    provider = SPEC.factory({"key": "invalid-key", "base_url": emulator.base_url}, provider_env)
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


async def test_the_key_never_appears_in_errors(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message=f"API key not valid: {KEY}.")))
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    assert KEY not in exc.message
    assert KEY not in str(exc)
    assert KEY not in exc.human_message


def test_a_retry_after_header_wins_over_retry_info() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow down"}}
    response = httpx.Response(429, headers={"retry-after": "3"}, json=body)
    exc = gateway_error(errors.ClientError(429, body, response), "gemini")
    assert isinstance(exc, ResourceExhausted)
    assert exc.retry_after == 3.0


@pytest.mark.parametrize(("status", "error"), [(500, Unavailable), (429, ResourceExhausted), (400, InvalidArgument)])
async def test_an_error_event_ends_the_stream_after_the_deltas(
    emulator: GeminiEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(
        Script(text="one two three four", fault=Fault(error_event_after_chunks=2, error_event_status=status))
    )
    events, exc = await chat_error(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]
    assert type(exc) is error


async def test_a_malformed_event_is_unavailable(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(malformed_after_chunks=1)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one "
    assert isinstance(exc, Unavailable)


async def test_a_connection_reset_mid_stream_is_unavailable(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=2)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one two "
    assert isinstance(exc, Unavailable)


async def test_a_slow_upstream_times_out(emulator: GeminiEmulator) -> None:
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


async def test_an_unreachable_upstream_is_unavailable(provider_env: ProviderEnv) -> None:
    provider = SPEC.factory({"key": KEY, "base_url": "http://127.0.0.1:9"}, provider_env)
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unavailable)


async def test_closing_the_stream_closes_the_upstream_connection(emulator: GeminiEmulator, provider: Provider) -> None:
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


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    emulator: GeminiEmulator, provider: Provider
) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(stall_after_chunks=1, stall_s=5)))
    received: list[Any] = []

    async def consume() -> None:
        async for event in provider.stream_chat(chat()):
            received.append(event)

    task = asyncio.create_task(consume())
    while not received:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if emulator.requests[-1].client_disconnected:
            break
        await asyncio.sleep(0.02)
    assert emulator.requests[-1].client_disconnected


# --- credential and base URL -----------------------------------------------------------------------------------


def test_a_base_url_outside_the_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"key": KEY, "base_url": "https://evil.example.com"}, provider_env)


@pytest.mark.parametrize("credential", [{}, {"key": ""}, {"key": 5}])
def test_a_missing_key_is_invalid(provider_env: ProviderEnv, credential: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="'key'"):
        SPEC.factory(credential, provider_env)


async def test_the_server_side_base_url_is_used(emulator: GeminiEmulator) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(provider_base_urls={"gemini": emulator.base_url}), clients)
    try:
        assert "credential accepted" in await SPEC.factory({"key": KEY}, env).verify_credential()
    finally:
        await clients.aclose()


def test_clients_are_reused_per_credential(
    emulator: GeminiEmulator, provider_env: ProviderEnv, clients: ClientCache
) -> None:
    for key in (KEY, KEY, "other-key"):
        SPEC.factory({"key": key, "base_url": emulator.base_url}, provider_env)
    assert len(clients) == 2


# --- unary RPCs ------------------------------------------------------------------------------------------------


async def test_verify_credential_lists_models(emulator: GeminiEmulator, provider: Provider) -> None:
    assert "3 models" in await provider.verify_credential()
    assert emulator.requests[-1].path == "/v1beta/models"
    assert emulator.requests[-1].headers["x-goog-api-key"] == KEY


async def test_verify_credential_maps_a_rejected_key(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=403, message="Permission denied")))
    with pytest.raises(PermissionDenied):
        await provider.verify_credential()


async def test_embeddings_keep_the_input_keys(emulator: GeminiEmulator, provider: Provider) -> None:
    parameters = {"model.dimensions": 12, "model.task_type": "RETRIEVAL_DOCUMENT"}
    result = await provider.embed(EmbeddingCall({5: "second text", 2: "first"}, parameters))
    assert [vector.index for vector in result.vectors] == [2, 5]
    assert result.vectors[0].values == pytest.approx(embedding_vector("first", 12))
    assert result.vectors[1].values == pytest.approx(embedding_vector("second text", 12))
    request = emulator.requests[-1]
    assert request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [item["content"] for item in request.body["requests"]] == [
        {"parts": [{"text": "first"}]},
        {"parts": [{"text": "second text"}]},
    ]
    assert {item["outputDimensionality"] for item in request.body["requests"]} == {12}
    assert {item["taskType"] for item in request.body["requests"]} == {"RETRIEVAL_DOCUMENT"}


async def test_embedding_rejects_unknown_parameters(emulator: GeminiEmulator, provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.top_k"):
        await provider.embed(EmbeddingCall({0: "x"}, {"model.top_k": 3}))
    with pytest.raises(InvalidArgument, match="no content"):
        await provider.embed(EmbeddingCall({}))
    assert emulator.requests == []


async def test_embedding_errors_are_mapped(emulator: GeminiEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=429, retry_after=1.5)))
    with pytest.raises(ResourceExhausted) as info:
        await provider.embed(EmbeddingCall({0: "x"}))
    assert info.value.retry_after == 1.5


async def test_the_emulator_offers_a_ready_credential(emulator: GeminiEmulator, provider_env: ProviderEnv) -> None:
    provider = SPEC.factory(emulator.credential(), provider_env)
    assert text_of(await collect(provider.stream_chat(chat()))) == "Hello from the emulator."


async def test_the_emulator_speaks_the_rest_of_the_wire_format(emulator: GeminiEmulator) -> None:
    emulator.enqueue(Script(text="whole answer", tool_calls=[ToolCallScript("f", '{"x": 1}')], input_tokens=3))
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        answer = (await http.post(f"/v1beta/models/{MODEL}:generateContent?key={KEY}", json={"contents": []})).json()
        candidate = answer["candidates"][0]
        assert candidate["content"]["parts"][0] == {"text": "whole answer"}
        assert candidate["content"]["parts"][1]["functionCall"] == {"name": "f", "args": {"x": 1}}
        assert candidate["finishReason"] == "STOP"
        assert answer["usageMetadata"]["promptTokenCount"] == 3
        missing = await http.get("/v1beta/models")
        assert missing.status_code == 401
        assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
        unknown = await http.post(f"/v1beta/models/{MODEL}:predictLongRunning", headers={"x-goog-api-key": KEY})
        assert unknown.status_code == 404
