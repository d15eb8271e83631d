"""The `replicate` adapter, through the real `replicate` SDK against the Replicate wire-format emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from replicate.client import Client

from integration_api.errors import (
    Cancelled,
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
from integration_api.testing.emulators.base import Fault, RecordedRequest, Script
from integration_api.testing.emulators.replicate import DEFAULT_VERSION, ReplicateEmulator
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.replicate import DEFAULT_BASE_URL, SPEC, ReplicateClient, ReplicateProvider
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
from tests.providers.helpers import collect, finished, stream_error, text_of

KEY = "r8_test_0123456789abcdef"
MODEL = "meta/llama-test"


@pytest.fixture
async def emulator() -> AsyncIterator[ReplicateEmulator]:
    async with ReplicateEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
def provider(emulator: ReplicateEmulator, provider_env: ProviderEnv) -> Provider:
    return SPEC.factory({"key": KEY, "base_url": emulator.base_url}, provider_env)


def chat(*messages: Any, tools: tuple[ToolSpec, ...] = (), params: dict[str, Any] | None = None) -> ChatCall:
    parameters = {"model.name": MODEL, **(params or {})}
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), parameters, tools=tools)


def creates(emulator: ReplicateEmulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.method == "POST" and not r.path.endswith("/cancel")]


def stream_reads(emulator: ReplicateEmulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.path.startswith("/v1/streams/")]


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


async def until(condition: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_one_delta_per_output_event(emulator: ReplicateEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown\nfox jumps.", input_tokens=7, output_tokens=9)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat()))
    assert [event.text for event in events if isinstance(event, TextDelta)] == script.text_chunks()
    done = finished(events)
    assert done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, 9)  # from the prediction's metrics
    [create] = creates(emulator)
    assert create.path == f"/v1/models/{MODEL}/predictions"
    assert create.body == {"input": {"prompt": "Say hello."}, "stream": True}
    assert create.headers["Authorization"] == f"Bearer {KEY}"
    assert done.provider_request_id in emulator.predictions
    assert [r.path for r in emulator.requests[1:]] == [
        f"/v1/streams/{done.provider_request_id}",
        f"/v1/predictions/{done.provider_request_id}",
    ]
    assert emulator.cancelled == []


async def test_a_version_creates_the_prediction_by_version(emulator: ReplicateEmulator, provider: Provider) -> None:
    events = await collect(provider.stream_chat(chat(params={"model.name": f"{MODEL}:{DEFAULT_VERSION}"})))
    assert text_of(events) == "Hello from the emulator."
    [create] = creates(emulator)
    assert create.path == "/v1/predictions"
    assert create.body == {"input": {"prompt": "Say hello."}, "version": DEFAULT_VERSION, "stream": True}


async def test_a_conversation_becomes_a_prompt_and_a_system_prompt(
    emulator: ReplicateEmulator, provider: Provider
) -> None:
    call = chat(
        SystemMessage("Be brief."),
        UserMessage("Hi."),
        AssistantMessage("Hello! How can I help?"),
        SystemMessage("Answer in English."),
        UserMessage("Weather in Paris?"),
    )
    await collect(provider.stream_chat(call))
    assert creates(emulator)[0].body["input"] == {
        "prompt": "User: Hi.\nAssistant: Hello! How can I help?\nUser: Weather in Paris?\nAssistant:",
        "system_prompt": "Be brief.\n\nAnswer in English.",
    }


async def test_model_parameters_become_the_model_input(emulator: ReplicateEmulator, provider: Provider) -> None:
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
    }
    await collect(provider.stream_chat(chat(params=parameters)))
    assert creates(emulator)[0].body["input"] == {
        "prompt": "Say hello.",
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 100,  # max_completion_tokens wins over max_tokens
        "stop_sequences": "END,STOP",
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
    }


@pytest.mark.parametrize(
    "parameter", ["model.tool_choice", "model.response_format", "model.user", "model.thinking", "model.no_such_thing"]
)
async def test_unsupported_parameters_are_invalid(
    emulator: ReplicateEmulator, provider: Provider, parameter: str
) -> None:
    with pytest.raises(InvalidArgument, match=parameter):
        await collect(provider.stream_chat(chat(params={parameter: "auto"})))
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (chat(tools=(ToolSpec("get_weather"),)), "tools"),
        (
            chat(
                UserMessage("Weather?"),
                AssistantMessage(tool_calls=(ToolCall("call_1", "get_weather", "{}"),)),
                ToolMessage((ToolResult("call_1", "get_weather", "sunny"),)),
            ),
            "tool",
        ),
        (chat(UserMessage("Hi."), AssistantMessage("Hello")), "ends with a user message"),
        (chat(SystemMessage("Only a system prompt.")), "ends with a user message"),
        (chat(params={"model.name": None}), "model.name"),
        (chat(params={"model.name": "llama-without-owner"}), "owner/name"),
        (chat(params={"model.name": "meta/../llama?x=1"}), "owner/name"),
    ],
)
async def test_requests_replicate_cannot_serve_are_invalid(
    emulator: ReplicateEmulator, provider: Provider, call: ChatCall, match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await collect(provider.stream_chat(call))
    assert emulator.requests == []


async def test_usage_is_counted_when_the_prediction_cannot_be_read(
    emulator: ReplicateEmulator, provider: Provider
) -> None:
    emulator.enqueue(Script(text="one two three", output_tokens=99))
    stream = provider.stream_chat(chat(UserMessage("four words of prompt")))
    deltas = [await anext(stream) for _ in range(3)]
    emulator.predictions.clear()  # the lookup after `done` now answers 404
    events = [*deltas, *[event async for event in stream]]
    assert text_of(events) == "one two three"
    assert finished(events).usage.output_tokens == 3
    assert finished(events).usage.input_tokens == 4


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidArgument),
        (401, Unauthenticated),
        (402, PermissionDenied),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidArgument),
        (429, ResourceExhausted),
        (500, Unavailable),
        (503, Unavailable),
    ],
)
async def test_http_errors_are_mapped(
    emulator: ReplicateEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="nope", retry_after=2 if status == 429 else None)))
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert "nope" in exc.message
    assert exc.retry_after == (2.0 if status == 429 else None)
    assert len(emulator.requests) == 1


async def test_the_key_never_appears_in_errors(emulator: ReplicateEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message=f"Invalid token {KEY}.")))
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    assert KEY not in exc.message
    assert KEY not in str(exc)
    assert KEY not in exc.human_message


async def test_an_error_event_ends_the_stream_after_the_deltas(
    emulator: ReplicateEmulator, provider: Provider, clients: ClientCache
) -> None:
    emulator.enqueue(Script(text="one two three four", fault=Fault(error_event_after_chunks=2, message="CUDA OOM")))
    events, exc = await chat_error(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two "]
    assert type(exc) is Unavailable
    assert "CUDA OOM" in exc.message
    assert exc.provider_request_id in emulator.predictions
    await clients.aclose()  # closing the client waits for every cancel it sent in the background
    assert emulator.cancelled == []  # the prediction failed by itself: nothing to cancel


async def test_an_error_event_never_repeats_the_key(emulator: ReplicateEmulator, provider: Provider) -> None:
    """Replicate's error event may quote what the model saw or what the request carried, the token included."""
    emulator.enqueue(Script(text="one two", fault=Fault(error_event_after_chunks=1, echo_request=True)))
    _, exc = await chat_error(provider)
    assert type(exc) is Unavailable
    assert "[redacted]" in exc.message  # the echoed Authorization header was there, and was scrubbed
    assert KEY not in exc.message and KEY not in str(exc) and KEY not in exc.human_message


async def test_a_malformed_stream_is_unavailable_and_cancels_the_prediction(
    emulator: ReplicateEmulator, provider: Provider
) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(malformed_after_chunks=1)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one "
    assert isinstance(exc, Unavailable)
    await until(lambda: emulator.cancelled == [exc.provider_request_id])


async def test_a_connection_reset_mid_stream_is_unavailable(emulator: ReplicateEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="one two three", fault=Fault(reset_after_chunks=2)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "one two "
    assert isinstance(exc, Unavailable)
    await until(lambda: len(emulator.cancelled) == 1)


async def test_a_prediction_canceled_upstream_is_cancelled(emulator: ReplicateEmulator, provider: Provider) -> None:
    # The stream stalls after its first word until the prediction is cancelled (the emulator then moves on).
    emulator.enqueue(Script(text="one two three four", fault=Fault(stall_after_chunks=1)))
    stream = provider.stream_chat(chat())
    assert await anext(stream) == TextDelta("one ")
    [prediction_id] = emulator.predictions
    url = f"{emulator.base_url}/v1/predictions/{prediction_id}/cancel"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session,
        session.post(url) as response,
    ):
        assert response.status == 200
    with pytest.raises(Cancelled):
        async for _ in stream:
            pass


async def test_a_slow_stream_times_out(emulator: ReplicateEmulator) -> None:
    clients = ClientCache()
    settings = Settings(allowed_base_urls=("http://127.0.0.1:*",), idle_timeout_s=0.2, first_token_timeout_s=0.2)
    env = ProviderEnv(settings, clients)
    provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env)
    emulator.enqueue(Script(text="one two three", fault=Fault(stall_after_chunks=1, stall_s=5)))
    try:
        events, exc = await chat_error(provider)
        assert text_of(events) == "one "
        assert isinstance(exc, DeadlineExceeded)
        await until(lambda: len(emulator.cancelled) == 1)
    finally:
        await clients.aclose()


async def test_closing_the_stream_closes_it_upstream_and_cancels_the_prediction(
    emulator: ReplicateEmulator, provider: Provider
) -> None:
    emulator.enqueue(Script(text=" ".join(f"w{i}" for i in range(100)), chunk_delay_s=0.02))
    stream = provider.stream_chat(chat())
    assert isinstance(await anext(stream), TextDelta)
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    [read] = stream_reads(emulator)
    await until(lambda: read.client_disconnected)
    assert not read.completed
    await until(lambda: emulator.cancelled == list(emulator.predictions))
    assert next(iter(emulator.predictions.values())).status == "canceled"


async def test_the_sdk_does_not_retry_by_itself(emulator: ReplicateEmulator, provider: Provider) -> None:
    emulator.enqueue(*[Script(fault=Fault(status=503))] * 3)
    with pytest.raises(Unavailable):
        await provider.verify_credential()
    assert len(emulator.requests) == 1  # the SDK's own transport would have retried this GET


# --- stream URL, credential and base URL -----------------------------------------------------------------------


async def test_a_stream_url_on_another_origin_is_denied(emulator: ReplicateEmulator, provider: Provider) -> None:
    emulator.stream_origin = f"http://localhost:{emulator.port}"  # not the base URL's origin, not allowed
    events, exc = await chat_error(provider)
    assert events == []
    assert isinstance(exc, PermissionDenied)
    assert stream_reads(emulator) == []  # the token never went there
    await until(lambda: emulator.cancelled == [exc.provider_request_id])


async def test_a_stream_url_on_an_allowed_origin_is_read(emulator: ReplicateEmulator) -> None:
    emulator.stream_origin = f"http://localhost:{emulator.port}"
    clients = ClientCache()
    env = ProviderEnv(Settings(allowed_base_urls=("http://127.0.0.1:*", "http://localhost:*")), clients)
    try:
        provider = SPEC.factory({"key": KEY, "base_url": emulator.base_url}, env)
        assert text_of(await collect(provider.stream_chat(chat()))) == "Hello from the emulator."
    finally:
        await clients.aclose()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://stream.replicate.com/v1/files/abc", True),
        ("https://streaming.api.replicate.com/v1/predictions/abc", True),
        ("https://api.replicate.com/v1/predictions/abc", True),
        ("http://stream.replicate.com/v1/files/abc", False),
        ("https://replicate.com.evil.example/v1/files/abc", False),
        ("http://169.254.169.254/latest", False),
    ],
)
async def test_replicate_hosts_stream_for_the_default_base_url(settings: Settings, url: str, allowed: bool) -> None:
    client = ReplicateClient(KEY, DEFAULT_BASE_URL, httpx.Timeout(1.0))
    try:
        provider = ReplicateProvider(client, DEFAULT_BASE_URL, settings)
        assert provider._stream_allowed(httpx.URL(url)) is allowed
    finally:
        await client.aclose()


def test_a_base_url_outside_the_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"key": KEY, "base_url": "https://evil.example.com"}, provider_env)


@pytest.mark.parametrize("credential", [{}, {"key": ""}, {"key": 5}])
def test_a_missing_key_is_invalid(provider_env: ProviderEnv, credential: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="'key'"):
        SPEC.factory(credential, provider_env)


def test_clients_are_reused_per_credential(
    emulator: ReplicateEmulator, provider_env: ProviderEnv, clients: ClientCache
) -> None:
    for key in (KEY, KEY, "r8_other"):
        SPEC.factory({"key": key, "base_url": emulator.base_url}, provider_env)
    assert len(clients) == 2


# --- VerifyCredential ------------------------------------------------------------------------------------------


async def test_verify_credential_reads_the_account(emulator: ReplicateEmulator, provider: Provider) -> None:
    assert "emulated-user" in await provider.verify_credential()
    assert emulator.requests[-1].path == "/v1/account"


async def test_verify_credential_maps_a_rejected_key(emulator: ReplicateEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message="You did not pass a valid authentication token")))
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


# --- the emulator itself ---------------------------------------------------------------------------------------


async def test_the_sdk_reads_the_emulated_stream(emulator: ReplicateEmulator) -> None:
    """The SDK's own streaming helper (which needs `id:` lines) understands the emulator's events."""
    emulator.enqueue(Script(text="one two\nlines"))
    client = Client(api_token=KEY, base_url=emulator.base_url)
    events = [event async for event in await client.async_stream(MODEL, input={"prompt": "hi"})]
    assert [(event.event.value, event.data) for event in events] == [
        ("output", "one "),
        ("output", "two\nlines"),
        ("done", "{}"),
    ]


async def test_the_emulator_rejects_a_missing_token_with_problem_details(emulator: ReplicateEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.base_url}/v1/models/{MODEL}/predictions", json={"input": {}}) as response:
            assert response.status == 401
            assert response.content_type == "application/problem+json"
            assert set(await response.json(content_type=None)) == {"title", "detail", "status"}
        headers = {"Authorization": f"Token {KEY}"}
        url = f"{emulator.base_url}/v1/models/{MODEL}/predictions"
        async with session.post(url, json={"input": {"prompt": "hi"}}, headers=headers) as response:
            assert response.status == 201
            prediction = await response.json()
    assert prediction["status"] == "succeeded"  # not streamed: the emulated model finishes at once
    assert "stream" not in prediction["urls"]
    assert prediction["metrics"]["input_token_count"] == 11
