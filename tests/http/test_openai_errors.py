"""Errors of the OpenAI-compatible API: each status raises the SDK's own typed exception; a failure after the stream
started is an SSE error event the SDK raises, never a clean end; bad input answers its status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from integration_api.errors import Internal, Unavailable
from integration_api.http import openai_errors
from integration_api.testing.emulators.base import Fault, Script
from integration_api.testing.emulators.openai import OpenAIEmulator
from tests.conftest import make_settings
from tests.http.conftest import HttpGateway, start_http_gateway, stop_http_gateway

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three four"}]


def client_of(gateway: HttpGateway, api_key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key or gateway.api_key, max_retries=0)


@pytest.mark.parametrize(
    ("simulated_status", "exception", "http_status"),
    [
        (400, openai.BadRequestError, 400),
        (401, openai.AuthenticationError, 401),
        (403, openai.PermissionDeniedError, 403),
        (404, openai.NotFoundError, 404),
        (409, openai.ConflictError, 409),
        (429, openai.RateLimitError, 429),
        (500, openai.InternalServerError, 502),  # the upstream failed: Bad Gateway
        (503, openai.InternalServerError, 503),
        (504, openai.InternalServerError, 504),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_raise_the_sdk_exception(
    http_gateway: HttpGateway,
    simulated_status: int,
    exception: type[openai.APIStatusError],
    http_status: int,
    stream: bool,
) -> None:
    client = client_of(http_gateway)
    with pytest.raises(exception) as raised:
        await client.chat.completions.create(
            model="simulated/echo", messages=HELLO, stream=stream, extra_body={"simulated_error": simulated_status}
        )
    assert raised.value.status_code == http_status
    body = raised.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "code", "param"}
    assert "simulated upstream error" in body["message"]
    await client.close()


async def test_an_error_after_the_stream_started_is_raised_by_the_sdk(http_gateway: HttpGateway) -> None:
    client = client_of(http_gateway)
    stream = await client.chat.completions.create(
        model="simulated/echo",
        messages=HELLO,
        stream=True,
        extra_body={"simulated_error": 429, "simulated_error_after": 2},
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["one ", "two "]
    assert isinstance(raised.value.body, dict) and raised.value.body["type"] == "rate_limit_error"
    await client.close()


async def test_an_error_event_ends_the_stream_without_done(http_gateway: HttpGateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{http_gateway.base_url}/chat/completions",
            headers={"authorization": f"Bearer {http_gateway.api_key}"},
            json={
                "model": "simulated/echo",
                "messages": HELLO,
                "stream": True,
                "simulated_error": 503,
                "simulated_error_after": 1,
            },
        )
    events = [block for block in response.text.split("\n\n") if block]
    assert response.status_code == 200
    assert len(events) == 2
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "service_unavailable"
    assert "[DONE]" not in response.text


async def test_rate_limit_carries_retry_after(tmp_path: Path) -> None:
    gateway = await start_http_gateway(make_settings(tmp_path, retry_max_attempts=1))
    try:
        async with OpenAIEmulator() as emulator:
            emulator.enqueue(Script(fault=Fault(status=429, retry_after=7)))
            credential = json.dumps({"key": "sk-test", "base_url": emulator.base_url})
            client = openai.AsyncOpenAI(
                base_url=gateway.base_url,
                api_key=gateway.api_key,
                max_retries=0,
                default_headers={"X-Provider-Credential": credential},
            )
            with pytest.raises(openai.RateLimitError) as raised:
                await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)
            assert raised.value.response.headers["retry-after"] == "7"
            await client.close()
    finally:
        await stop_http_gateway(gateway)


async def test_missing_or_invalid_auth_is_401(http_gateway: HttpGateway) -> None:
    client = client_of(http_gateway, api_key="ia_notakey_at_all")
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="simulated/echo", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{http_gateway.base_url}/chat/completions", json={"model": "simulated/echo"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_unknown_model_is_404_model_not_found(http_gateway: HttpGateway) -> None:
    client = client_of(http_gateway)
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="nosuchvendor/some-model", messages=HELLO)
    assert isinstance(raised.value.body, dict)
    assert (raised.value.body["code"], raised.value.body["param"]) == ("model_not_found", "model")
    await client.close()


async def test_invalid_json_is_400(http_gateway: HttpGateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{http_gateway.base_url}/chat/completions",
            headers={"authorization": f"Bearer {http_gateway.api_key}", "content-type": "application/json"},
            content=b'{"model": "simulated/echo", "messages": [',
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unsupported_parameter_is_400_from_the_adapter(http_gateway: HttpGateway) -> None:
    client = client_of(http_gateway)
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="simulated/echo", messages=HELLO, extra_body={"no_such_knob": 1})
    assert "model.no_such_knob" in raised.value.message
    await client.close()


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    gateway = await start_http_gateway(make_settings(tmp_path, http_max_body_bytes=64 * 1024))
    try:
        client = client_of(gateway)
        big: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x" * (100 * 1024)}]
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="simulated/echo", messages=big)
        assert raised.value.status_code == 413
        assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "request_too_large"
        await client.close()
        # A chunked body (no Content-Length) is cut off as it grows, too.
        async with httpx.AsyncClient() as http:

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(8):
                    yield b"x" * 16 * 1024

            response = await http.post(
                f"{gateway.base_url}/chat/completions",
                headers={"authorization": f"Bearer {gateway.api_key}"},
                content=chunks(),
            )
        assert response.status_code == 413
    finally:
        await stop_http_gateway(gateway)


async def test_unknown_paths_are_404(http_gateway: HttpGateway) -> None:
    async with httpx.AsyncClient() as http:
        under_v1 = await http.post(f"{http_gateway.base_url}/completions/legacy", json={})
        elsewhere = await http.get(f"{http_gateway.url}/no/such/page")
    assert under_v1.status_code == 404
    assert under_v1.json()["error"]["code"] == "unknown_url"
    assert elsewhere.status_code == 404


def test_status_mapping_of_gateway_errors() -> None:
    assert openai_errors.http_status(Internal("boom")) == 500
    assert openai_errors.http_status(Unavailable("overloaded", upstream_status=529)) == 503
    assert openai_errors.http_status(Unavailable("bad upstream", upstream_status=502)) == 502
    assert openai_errors.error_headers(Unavailable("later", retry_after=1.5)) == {
        "retry-after": "2",
        "retry-after-ms": "1500",
    }
