"""The `vertexai` adapter, through the real `google-genai` SDK and google-auth against the Vertex AI emulator.

The service account key (the emulator's) holds a real RSA key; its ``token_uri`` points at the emulator, which
plays Google's OAuth token endpoint as well as Vertex AI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

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
from integration_api.testing.emulators.base import Fault, RecordedRequest, Script, ToolCallScript
from integration_api.testing.emulators.openai import embedding_vector
from integration_api.testing.emulators.vertexai import VertexAIEmulator
from providers.base import Provider, ProviderEnv
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolResult,
    UserMessage,
)
from providers.vertexai import SPEC
from tests.providers.helpers import collect, finished, stream_error, text_of, tool_calls_of

PROJECT = "my-project-123"
REGION = "europe-west4"
MODEL = "gemini-2.5-flash"
CLIENT_EMAIL = f"gateway@{PROJECT}.iam.gserviceaccount.com"
MODEL_PREFIX = f"/v1beta1/projects/{PROJECT}/locations/{REGION}/publishers/google/models"


def service_account_key(emulator: VertexAIEmulator, /, **overrides: Any) -> str:
    """The emulator's service account key, with fields replaced (None: removed)."""
    info = {**emulator.service_account_key(PROJECT), **overrides}
    return json.dumps({key: value for key, value in info.items() if value is not None})


@pytest.fixture
async def emulator() -> AsyncIterator[VertexAIEmulator]:
    async with VertexAIEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
def credential(emulator: VertexAIEmulator) -> dict[str, Any]:
    return emulator.credential(PROJECT, REGION)


@pytest.fixture
def provider(credential: dict[str, Any], provider_env: ProviderEnv) -> Provider:
    return SPEC.factory(credential, provider_env)


def chat(*messages: Any, params: dict[str, Any] | None = None) -> ChatCall:
    parameters = {"model.name": MODEL, **(params or {})}
    return ChatCall("req-1", messages or (UserMessage("Say hello."),), parameters)


def api_requests(emulator: VertexAIEmulator) -> list[RecordedRequest]:
    return [request for request in emulator.requests if request.path != "/token"]


async def chat_error(provider: Provider, call: ChatCall | None = None) -> tuple[list[Any], GatewayError]:
    return await stream_error(provider, call or chat())


# --- streaming -------------------------------------------------------------------------------------------------


async def test_text_streams_with_an_exchanged_token(emulator: VertexAIEmulator, provider: Provider) -> None:
    script = Script(text="The quick brown fox jumps.", input_tokens=7)
    emulator.enqueue(script, Script(text="again"))
    events = await collect(provider.stream_chat(chat()))
    assert [event.text for event in events if isinstance(event, TextDelta)] == script.text_chunks()
    done = finished(events)
    assert (done.finish_reason, done.usage.input_tokens, done.usage.output_tokens) == ("stop", 7, 5)
    await collect(provider.stream_chat(chat()))
    # One token exchange, reused for both requests.
    token_requests = [request for request in emulator.requests if request.path == "/token"]
    assert len(token_requests) == 1
    assert b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in token_requests[0].body
    claims = emulator.token_claims[0]
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    first, second = api_requests(emulator)
    assert first.path == f"{MODEL_PREFIX}/{MODEL}:streamGenerateContent"
    assert first.query == {"alt": "sse"}
    assert first.headers["Authorization"] == second.headers["Authorization"] == "Bearer ya29.emulated-1"


async def test_tool_calls_and_a_tool_result_turn(emulator: VertexAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(text="", tool_calls=[ToolCallScript("get_weather", '{"city": "Paris"}')]))
    events = await collect(provider.stream_chat(chat()))
    assert tool_calls_of(events) == {0: {"id": "call_0", "name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert finished(events).finish_reason == "tool_calls"
    call = chat(
        SystemMessage("Be brief."),
        UserMessage("Weather in Paris?"),
        AssistantMessage(tool_calls=(ToolCall("call_0", "get_weather", '{"city": "Paris"}'),)),
        ToolMessage((ToolResult("call_0", "get_weather", "18C"),)),
    )
    assert text_of(await collect(provider.stream_chat(call))) == "Hello from the emulator."
    body = api_requests(emulator)[-1].body
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"id": "call_0", "name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                }
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"id": "call_0", "name": "get_weather", "response": {"output": "18C"}}}],
        },
    ]


async def test_unsupported_parameters_are_invalid(emulator: VertexAIEmulator, provider: Provider) -> None:
    with pytest.raises(InvalidArgument, match=r"model\.user"):
        await collect(provider.stream_chat(chat(params={"model.user": "u-1"})))
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
    emulator: VertexAIEmulator, provider: Provider, status: int, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(fault=Fault(status=status, message="nope", retry_after=3 if status == 429 else None)))
    events, exc = await chat_error(provider)
    assert events == []
    assert type(exc) is error
    assert exc.upstream_status == status
    assert exc.retry_after == (3.0 if status == 429 else None)


@pytest.mark.parametrize(
    ("fault", "expected_text", "error"),
    [
        (Fault(error_event_after_chunks=2, error_event_status=503), "one two ", Unavailable),
        (Fault(error_event_after_chunks=1, error_event_status=429), "one ", ResourceExhausted),
        (Fault(malformed_after_chunks=1), "one ", Unavailable),
        (Fault(reset_after_chunks=2), "one two ", Unavailable),
    ],
)
async def test_mid_stream_failures_end_the_stream_after_the_deltas(
    emulator: VertexAIEmulator, provider: Provider, fault: Fault, expected_text: str, error: type[GatewayError]
) -> None:
    emulator.enqueue(Script(text="one two three four", fault=fault))
    events, exc = await chat_error(provider)
    assert text_of(events) == expected_text
    assert type(exc) is error


async def test_closing_the_stream_closes_the_upstream_connection(
    emulator: VertexAIEmulator, provider: Provider
) -> None:
    emulator.enqueue(Script(text=" ".join(f"w{i}" for i in range(100)), chunk_delay_s=0.02))
    stream = provider.stream_chat(chat())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    for _ in range(100):
        if emulator.requests[-1].client_disconnected:
            break
        await asyncio.sleep(0.02)
    assert emulator.requests[-1].client_disconnected
    assert not emulator.requests[-1].completed


async def test_a_refused_token_exchange_is_unauthenticated(emulator: VertexAIEmulator, provider: Provider) -> None:
    emulator.refuse_tokens = True
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unauthenticated)
    assert api_requests(emulator) == []


async def test_an_unreachable_token_endpoint_is_unavailable(
    emulator: VertexAIEmulator, credential: dict[str, Any], provider_env: ProviderEnv
) -> None:
    key = service_account_key(emulator, token_uri="http://127.0.0.1:9/token")
    provider = SPEC.factory({**credential, "service_account_key": key}, provider_env)
    _, exc = await chat_error(provider)
    assert isinstance(exc, Unavailable)


# --- credential and base URL -----------------------------------------------------------------------------------


def test_a_base_url_outside_the_allowlist_is_denied(credential: dict[str, Any], provider_env: ProviderEnv) -> None:
    with pytest.raises(PermissionDenied):
        SPEC.factory({**credential, "base_url": "https://evil.example.com"}, provider_env)


def test_a_token_uri_outside_the_allowlist_is_denied(
    emulator: VertexAIEmulator, credential: dict[str, Any], provider_env: ProviderEnv
) -> None:
    key = service_account_key(emulator, token_uri="https://evil.example.com/token")
    with pytest.raises(PermissionDenied) as info:
        SPEC.factory({**credential, "service_account_key": key}, provider_env)
    assert "evil.example.com" not in info.value.message


def test_google_token_uris_are_always_allowed(
    emulator: VertexAIEmulator, credential: dict[str, Any], provider_env: ProviderEnv
) -> None:
    key = service_account_key(emulator, token_uri="https://oauth2.googleapis.com/token")
    assert SPEC.factory({**credential, "service_account_key": key}, provider_env).name == "vertexai"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"project_id": ""}, "'project_id'"),
        ({"region": None}, "'region'"),
        ({"service_account_key": ""}, "'service_account_key'"),
        ({"service_account_key": "not json"}, "JSON key file"),
        ({"service_account_key": "[1]"}, "JSON object"),
        ({"region": "evil.example.com/#"}, "'region'"),
        ({"project_id": "p/../../other"}, "'project_id'"),
    ],
)
def test_a_bad_credential_is_invalid(
    credential: dict[str, Any], provider_env: ProviderEnv, change: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        SPEC.factory({**credential, **change}, provider_env)


@pytest.mark.parametrize("field", ["client_email", "private_key", "token_uri"])
def test_a_key_file_without_a_needed_field_is_invalid(
    credential: dict[str, Any], emulator: VertexAIEmulator, provider_env: ProviderEnv, field: str
) -> None:
    key = service_account_key(emulator, **{field: None})
    with pytest.raises(InvalidArgument, match=f"'{field}'"):
        SPEC.factory({**credential, "service_account_key": key}, provider_env)


def test_an_unreadable_private_key_is_invalid_and_never_quoted(
    credential: dict[str, Any], emulator: VertexAIEmulator, provider_env: ProviderEnv
) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    key = service_account_key(emulator, private_key=secret)
    with pytest.raises(InvalidArgument) as info:
        SPEC.factory({**credential, "service_account_key": key}, provider_env)
    assert "TOPSECRETMATERIAL" not in str(info.value)
    assert "TOPSECRETMATERIAL" not in info.value.human_message


# --- unary RPCs ------------------------------------------------------------------------------------------------


async def test_verify_credential_lists_the_project_models(emulator: VertexAIEmulator, provider: Provider) -> None:
    description = await provider.verify_credential()
    assert PROJECT in description and REGION in description
    request = api_requests(emulator)[-1]
    assert request.path == f"/v1beta1/projects/{PROJECT}/locations/{REGION}/models"
    assert request.headers["Authorization"].startswith("Bearer ya29.")


async def test_verify_credential_maps_a_refused_key(emulator: VertexAIEmulator, provider: Provider) -> None:
    emulator.refuse_tokens = True
    with pytest.raises(Unauthenticated):
        await provider.verify_credential()


@pytest.mark.parametrize(
    ("model", "inputs", "method"),
    [
        ("gemini-embedding-001", {5: "second text", 2: "first"}, "batchEmbedContents"),
        ("gemini-embedding-001", {7: "only one"}, "embedContent"),
        ("text-embedding-005", {5: "second text", 2: "first"}, "predict"),
    ],
)
async def test_embeddings_keep_the_input_keys(
    emulator: VertexAIEmulator, provider: Provider, model: str, inputs: dict[int, str], method: str
) -> None:
    result = await provider.embed(EmbeddingCall(inputs, {"model.name": model, "model.dimensions": 6}))
    assert [vector.index for vector in result.vectors] == sorted(inputs)
    for vector in result.vectors:
        assert vector.values == pytest.approx(embedding_vector(inputs[vector.index], 6))
    assert api_requests(emulator)[-1].path == f"{MODEL_PREFIX}/{model}:{method}"
    if method != "batchEmbedContents":  # Vertex counts tokens in these two answers
        assert result.usage.input_tokens == sum(len(text.split()) for text in inputs.values())


async def test_embedding_errors_are_mapped(emulator: VertexAIEmulator, provider: Provider) -> None:
    emulator.enqueue(Script(fault=Fault(status=429, retry_after=1.5)))
    with pytest.raises(ResourceExhausted) as info:
        await provider.embed(EmbeddingCall({0: "x"}))
    assert info.value.retry_after == 1.5
