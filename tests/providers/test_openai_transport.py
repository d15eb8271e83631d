"""The replay of the SDK's chat request (`providers._openai_transport`): the same request on the wire, every time.

The adapters' behaviour on both send paths is covered by test_openai.py, test_openai_stream.py and test_azure.py
(their `provider` fixtures run each test once per path); these tests pin what the replay itself promises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from integration_api.testing.emulators.azure import AzureEmulator
from integration_api.testing.emulators.base import Emulator, RecordedRequest
from integration_api.testing.emulators.openai import OpenAIEmulator
from providers import azure, openai
from providers._openai_transport import environment_proxy
from providers.base import ProviderEnv, ProviderSpec
from providers.types import ChatCall, UserMessage
from tests.providers.helpers import collect, finished, text_of

KEY = "sk-test-0123456789abcdef"
# Headers that differ between any two requests whoever sends them.
PER_REQUEST = {"content-length", "host", "accept-encoding", "connection"}


def chat(model: str, text: str = "Say hello.") -> ChatCall:
    return ChatCall("req-1", (UserMessage(text),), {"model.name": model})


def replayed_headers(request: RecordedRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items() if name.lower() not in PER_REQUEST}


async def three_chats(
    emulator: Emulator, spec: ProviderSpec, credential: Mapping[str, str], model: str, env: ProviderEnv
) -> None:
    for word in ("one", "two", "three"):
        provider = spec.factory(dict(credential), env)
        events = await collect(provider.stream_chat(chat(model, f"Say {word}.")))
        assert finished(events).finish_reason == "stop"
        assert text_of(events)
    assert len(emulator.requests) == 3


@pytest.fixture
async def openai_emulator() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator() as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
async def azure_emulator() -> AsyncIterator[AzureEmulator]:
    async with AzureEmulator() as emulator:
        yield emulator  # type: ignore[misc]


async def test_openai_replays_send_the_sdks_request_with_their_own_body(
    openai_emulator: OpenAIEmulator, provider_env: ProviderEnv
) -> None:
    credential = {"key": KEY, "base_url": openai_emulator.base_url}
    await three_chats(openai_emulator, openai.SPEC, credential, "gpt-4o", provider_env)
    first, *replays = openai_emulator.requests
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert "x-stainless-lang" in replayed_headers(first)
    for replay in replays:
        assert (replay.method, replay.path, dict(replay.query)) == (first.method, first.path, dict(first.query))
        assert replayed_headers(replay) == replayed_headers(first)
    assert [r.body["messages"][0]["content"] for r in openai_emulator.requests] == [
        "Say one.",
        "Say two.",
        "Say three.",
    ]
    assert all(r.body["stream_options"] == {"include_usage": True} for r in openai_emulator.requests)


async def test_a_replay_sends_integers_beyond_64_bits_as_the_sdk_does(
    openai_emulator: OpenAIEmulator, provider_env: ProviderEnv
) -> None:
    credential = {"key": KEY, "base_url": openai_emulator.base_url}
    call = ChatCall("req-1", (UserMessage("hi"),), {"model.name": "gpt-4o", "model.seed": 1e20})
    for _ in range(2):  # the SDK's request, then the replay
        finished(await collect(openai.SPEC.factory(credential, provider_env).stream_chat(call)))
    assert [r.body["seed"] for r in openai_emulator.requests] == [10**20, 10**20]


async def test_azure_replays_keep_the_deployment_path_api_version_and_key(
    azure_emulator: AzureEmulator, provider_env: ProviderEnv
) -> None:
    credential = {"subscription_key": KEY, "endpoint": azure_emulator.base_url}
    await three_chats(azure_emulator, azure.SPEC, credential, "my-deployment", provider_env)
    first, *replays = azure_emulator.requests
    assert first.path.endswith("/openai/deployments/my-deployment/chat/completions")
    assert first.query["api-version"]
    assert first.headers["api-key"] == KEY
    for replay in replays:
        assert (replay.path, dict(replay.query)) == (first.path, dict(first.query))
        assert replayed_headers(replay) == replayed_headers(first)


async def test_each_model_has_its_own_route(azure_emulator: AzureEmulator, provider_env: ProviderEnv) -> None:
    credential = {"subscription_key": KEY, "endpoint": azure_emulator.base_url}
    for deployment in ("alpha", "beta", "alpha", "beta"):
        finished(await collect(azure.SPEC.factory(credential, provider_env).stream_chat(chat(deployment))))
    assert [r.path.split("/")[-3] for r in azure_emulator.requests] == ["alpha", "beta", "alpha", "beta"]


async def test_replays_go_through_the_environments_proxy(
    openai_emulator: OpenAIEmulator, provider_env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "upstream" is an address nothing listens on; the emulator is the proxy, and answers what it is sent.
    async with OpenAIEmulator() as target:
        unreachable = target.base_url
    monkeypatch.setenv("HTTP_PROXY", openai_emulator.base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    await three_chats(openai_emulator, openai.SPEC, {"key": KEY, "base_url": unreachable}, "gpt-4o", provider_env)


def test_the_environments_proxy_is_looked_up_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert environment_proxy("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,localhost")
    assert environment_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert environment_proxy("https://llm.internal.example/v1/chat/completions") is None
    assert environment_proxy("http://api.openai.com/v1/chat/completions") is None  # no HTTP_PROXY
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    assert environment_proxy("http://api.openai.com/v1/chat/completions") == "http://all.internal:3128"
