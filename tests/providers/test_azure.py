"""The `azure` adapter, through the real `openai` SDK's AsyncAzureOpenAI against the Azure wire-format emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import orjson
import pytest

from integration_api.errors import (
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from integration_api.settings import Settings
from integration_api.testing.emulators.azure import DEFAULT_API_VERSION, AzureEmulator
from integration_api.testing.emulators.base import Fault, RecordedRequest, Script, ToolCallScript
from integration_api.testing.emulators.openai import embedding_vector
from providers.azure import SPEC
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    ModerationCall,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolResult,
    UserMessage,
)
from tests.providers.helpers import SEND_PATHS, collect, finished, on_send_path, stream_error, text_of, tool_calls_of

KEY = "azure-key-0123456789abcdef"
DEPLOYMENT = "my-gpt4o"


@pytest.fixture
async def emulator() -> AsyncIterator[AzureEmulator]:
    async with AzureEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture(params=SEND_PATHS)
async def provider(emulator: AzureEmulator, provider_env: ProviderEnv, request: pytest.FixtureRequest) -> Provider:
    provider = SPEC.factory({"subscription_key": KEY, "endpoint": emulator.base_url}, provider_env)
    await on_send_path(request.param, provider, chat())
    emulator.requests.clear()
    return provider


def chat(*messages: Any, params: dict[str, Any] | None = None) -> ChatCall:
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), {"model.name": DEPLOYMENT, **(params or {})})


def last(emulator: AzureEmulator) -> RecordedRequest:
    return emulator.requests[-1]


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_from_the_deployment(emulator: AzureEmulator, provider: Provider) -> None:
    script = Script(text="Azure says hello to you.", input_tokens=9)
    emulator.enqueue(script)
    events = await collect(provider.stream_chat(chat()))
    # The prompt annotation chunk (empty choices) yields nothing; each word is one delta.
    assert [e.text for e in events if isinstance(e, TextDelta)] == script.text_chunks()
    done = finished(events)
    assert done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (9, len(script.text_chunks()))
    assert done.provider_request_id
    request = last(emulator)
    assert request.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert request.query["api-version"] == DEFAULT_API_VERSION
    assert request.headers["api-key"] == KEY
    assert "Authorization" not in request.headers
    assert request.body["stream_options"] == {"include_usage": True}


async def test_a_content_filter_finish_is_content_filter(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="partial answer", finish_reason="content_filter"))
    events = await collect(provider.stream_chat(chat()))
    assert text_of(events) == "partial answer"
    assert finished(events).finish_reason == "content_filter"


async def test_parallel_tool_calls_and_the_tool_result_turn(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(
        Script(
            text="", tool_calls=[ToolCallScript("lookup", '{"q": "a"}', "c1"), ToolCallScript("lookup", '{"q": "b"}')]
        )
    )
    events = await collect(provider.stream_chat(chat()))
    calls = tool_calls_of(events)
    assert [calls[0]["arguments"], calls[1]["arguments"]] == ['{"q": "a"}', '{"q": "b"}']
    assert calls[0]["id"] == "c1"
    assert calls[1]["id"]
    assert finished(events).finish_reason == "tool_calls"

    turn = chat(
        UserMessage("look it up"),
        AssistantMessage(text="Looking.", tool_calls=(ToolCall("c1", "lookup", '{"q": "a"}'),)),
        ToolMessage((ToolResult("c1", "lookup", "found"),)),
    )
    await collect(provider.stream_chat(turn))
    messages = last(emulator).body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "a"}'}}],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "found"}


async def test_the_deployment_is_required(emulator: AzureEmulator, provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.name"):
        await collect(provider.stream_chat(ChatCall("req-1", (UserMessage("hi"),))))
    assert emulator.requests == []


@pytest.mark.parametrize("parameter", ["model.top_k", "model.thinking"])
async def test_unsupported_parameters_are_invalid(emulator: AzureEmulator, provider: Provider, parameter: str) -> None:
    with pytest.raises(InvalidArgument, match=parameter):
        await collect(provider.stream_chat(chat(params={parameter: "x"})))
    assert emulator.requests == []


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
    emulator: AzureEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(
        Script(fault=Fault(status=status, message=f"denied {KEY}", retry_after=6 if status == 429 else None))
    )
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert exc.provider_request_id
    assert exc.retry_after == (6.0 if status == 429 else None)
    assert KEY not in str(exc)


async def test_an_error_event_ends_the_stream_after_the_deltas(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="a b c d", fault=Fault(error_event_after_chunks=3, error_event_status=429)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "a b c "
    assert isinstance(exc, ResourceExhausted)


async def test_a_malformed_event_is_unavailable(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="a b c", fault=Fault(malformed_after_chunks=2)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "a b "
    assert isinstance(exc, Unavailable)


async def test_a_connection_reset_mid_stream_is_unavailable(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="a b c", fault=Fault(reset_after_chunks=1)))
    events, exc = await chat_error(provider)
    assert text_of(events) == "a "
    assert isinstance(exc, Unavailable)


async def test_closing_the_stream_closes_the_upstream_connection(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text=" ".join(f"w{i}" for i in range(100)), chunk_delay_s=0.02))
    stream = provider.stream_chat(chat())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    for _ in range(100):
        if last(emulator).client_disconnected:
            break
        await asyncio.sleep(0.02)
    assert last(emulator).client_disconnected
    assert not last(emulator).completed


# --- Azure's own stream chunks ---------------------------------------------------------------------------------

# As Azure streams with asynchronous content filtering: the prompt annotation, a role chunk, text, the finish, then
# an annotation-only choice (no delta) for the filtered output, then usage.
AZURE_STREAM = [
    {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{"prompt_index": 0}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Filtered "}, "finish_reason": None}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "later."}, "finish_reason": None}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "", "choices": [{"index": 0, "finish_reason": None, "content_filter_offsets": {"start_offset": 0}}]},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}},
]


async def test_annotation_only_chunks_yield_nothing(provider_env: ProviderEnv) -> None:
    async def chat_handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(
            headers={"content-type": "text/event-stream", "apim-request-id": "apim-1"}
        )
        await response.prepare(request)
        for chunk in AZURE_STREAM:
            await response.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
        await response.write(b"data: [DONE]\r\n\r\n")
        return response

    app = aiohttp.web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat_handler)
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider = SPEC.factory({"subscription_key": KEY, "endpoint": f"http://127.0.0.1:{port}"}, provider_env)
    try:
        events = await collect(provider.stream_chat(chat()))
    finally:
        await runner.cleanup()
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Filtered ", "later."]
    done = finished(events)
    assert (done.finish_reason, done.usage.input_tokens, done.usage.output_tokens) == ("stop", 4, 2)
    assert done.provider_request_id == "apim-1"


async def test_an_unreachable_endpoint_is_unavailable(provider_env: ProviderEnv) -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    provider = SPEC.factory({"subscription_key": KEY, "endpoint": f"http://127.0.0.1:{port}"}, provider_env)
    _, exc = await chat_error(provider)
    assert type(exc) is Unavailable


# --- credential and endpoint -----------------------------------------------------------------------------------


def test_an_endpoint_outside_the_allowlist_is_denied(provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({"subscription_key": KEY, "endpoint": "https://evil.example.com"}, provider_env)


def test_a_missing_endpoint_is_invalid(provider_env: ProviderEnv) -> None:
    with pytest.raises(InvalidArgument, match="endpoint"):
        SPEC.factory({"subscription_key": KEY}, provider_env)


def test_a_missing_subscription_key_is_invalid(emulator: AzureEmulator, provider_env: ProviderEnv) -> None:
    with pytest.raises(InvalidArgument, match="subscription_key"):
        SPEC.factory({"endpoint": emulator.base_url}, provider_env)


async def test_the_server_side_endpoint_and_the_api_version(emulator: AzureEmulator) -> None:
    clients = ClientCache()
    env = ProviderEnv(Settings(provider_base_urls={"azure": emulator.base_url}), clients)
    try:
        provider = SPEC.factory({"subscription_key": KEY, "api_version": "2025-01-01-preview"}, env)
        assert "3 models" in await provider.verify_credential()
    finally:
        await clients.aclose()
    assert last(emulator).path == "/openai/models"
    assert last(emulator).query["api-version"] == "2025-01-01-preview"


# --- unary RPCs ------------------------------------------------------------------------------------------------


async def test_verify_credential_maps_a_rejected_key(emulator: AzureEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=401, message="Access denied due to invalid subscription key")))
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


async def test_embeddings_use_the_deployment(emulator: AzureEmulator, provider: Provider) -> None:
    call = EmbeddingCall({1: "b text", 0: "a"}, {"model.name": "embed-deploy", "model.encoding_format": "float"})
    result = await provider.embed(call)
    assert [vector.index for vector in result.vectors] == [0, 1]
    assert result.vectors[1].values == pytest.approx(embedding_vector("b text", 8))
    assert last(emulator).path == "/openai/deployments/embed-deploy/embeddings"


async def test_embeddings_need_a_deployment(provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.name"):
        await provider.embed(EmbeddingCall({0: "a"}))


async def test_moderation(emulator: AzureEmulator, provider: Provider) -> None:
    result = await provider.moderate(ModerationCall("a forbidden thing"))
    assert result.scores["violence"] > 0.5
    assert last(emulator).path == "/openai/moderations"
    assert last(emulator).query["api-version"] == DEFAULT_API_VERSION


# --- the emulator itself ---------------------------------------------------------------------------------------


async def test_the_emulator_needs_the_api_version_and_the_api_key(emulator: AzureEmulator) -> None:
    url = f"{emulator.base_url}/openai/deployments/{DEPLOYMENT}/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers={"api-key": KEY}) as response:
            assert response.status == 404
        params = {"api-version": DEFAULT_API_VERSION}
        async with session.post(url, json=body, params=params) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "401"
        async with session.post(url, json=body, params=params, headers={"api-key": KEY}) as response:
            assert response.status == 200
            completion = await response.json()
    assert completion["model"] == DEPLOYMENT
    assert completion["prompt_filter_results"][0]["prompt_index"] == 0
    assert completion["choices"][0]["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
