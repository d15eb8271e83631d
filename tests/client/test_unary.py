"""AsyncClient's unary helpers, health check and version against a real gateway."""

from __future__ import annotations

import pytest

from integration_api.client import (
    CLIENT_PROTOCOL_REVISION,
    APIConnectionError,
    AsyncClient,
    BadRequestError,
    Credential,
    RateLimitError,
    Tool,
)
from tests.client.conftest import SIM, user


async def test_chat_returns_the_whole_result(client: AsyncClient) -> None:
    result = await client.chat(user("unary hello"), provider=SIM, model="m", request_id="u1")
    assert result.text == "unary hello" and result.finish_reason == "stop" and result.request_id == "u1"
    assert result.usage.total_tokens == 4


async def test_chat_with_tools_and_typed_messages(client: AsyncClient) -> None:
    tool = Tool("lookup", "Look a word up", {"type": "object", "properties": {"word": {"type": "string"}}})
    result = await client.chat(
        [{"role": "system", "content": "be brief"}, *user("define cat")],
        provider=SIM,
        tools=[tool],
        parameters={"simulated_reply": "", "simulated_tool_calls": [{"name": "lookup", "arguments": {"word": "cat"}}]},
    )
    assert result.tool_calls[0].name == "lookup" and result.tool_calls[0].parsed_arguments() == {"word": "cat"}


async def test_unary_errors_are_typed_with_status_details(client: AsyncClient) -> None:
    with pytest.raises(RateLimitError) as caught:
        await client.chat(user("x"), provider=SIM, parameters={"simulated_error": 429})
    assert caught.value.code == 429 and caught.value.retryable and caught.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(BadRequestError, match=r"model\.no_such_knob"):
        await client.chat(user("x"), provider=SIM, parameters={"no_such_knob": 1})


async def test_embed_rerank_verify_moderate(client: AsyncClient) -> None:
    embedded = await client.embed(["first text", "second text"], provider=SIM, model="e")
    assert [e.index for e in embedded.embeddings] == [0, 1] and len(embedded.vectors[0]) == 16
    assert embedded.usage.input_tokens == 4
    assert (await client.embed("single", provider=SIM)).vectors[0] == (await client.embed(["single"])).vectors[0]

    ranked = await client.rerank("cat food", ["dog toys", "cat food bowl", "cat"], provider=SIM)
    assert [r.index for r in ranked.results] == [1, 2, 0] and ranked.results[0].document == "cat food bowl"

    accepted = await client.verify_credential(Credential.of(key="good"), provider=SIM)
    rejected = await client.verify_credential(Credential.of(key="invalid"), provider=SIM)
    assert accepted.valid and accepted.code == 200
    assert not rejected.valid and rejected.code == 401 and "invalid" in rejected.message

    moderation = await client.moderate("something forbidden", provider=SIM)
    assert moderation.scores["flagged"] == 1.0


async def test_check_connection_and_version(client: AsyncClient) -> None:
    await client.check_connection()
    version = await client.get_version()
    assert version.protocol_revision >= CLIENT_PROTOCOL_REVISION
    assert "simulated" in {provider.name for provider in version.providers}


async def test_unreachable_gateway_is_a_connection_error(unused_tcp_port: int) -> None:
    async with AsyncClient(f"127.0.0.1:{unused_tcp_port}", timeout=5) as client:
        with pytest.raises(APIConnectionError, match="could not reach"):
            await client.check_connection()
        with pytest.raises(APIConnectionError) as caught:
            await client.embed("x")
        assert caught.value.retryable
        async with client.stream() as stream:
            with pytest.raises(APIConnectionError):
                await stream.chat(user("hi")).text()
