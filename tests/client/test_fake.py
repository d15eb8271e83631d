"""The fake clients users test their own code with: same surface, scripted answers, a record of calls."""

from __future__ import annotations

import asyncio

import pytest

from integration_api.client import (
    AsyncClient,
    Client,
    Credential,
    CredentialCheck,
    EmbeddingResult,
    RateLimitError,
    RequestCancelledError,
    Tool,
    ToolCall,
    ToolCallDelta,
    UserMessage,
)
from integration_api.testing.fake import AsyncFakeClient, FakeClient, FakeGateway, RecordedCall


async def summarize(client: AsyncClient, text: str) -> str:
    """Code under test: typed against the real client."""
    async with client.stream("openai", credential=Credential.openai(key="sk-test")) as stream:
        return await stream.chat([{"role": "user", "content": f"Summarize: {text}"}], model="gpt-x").text()


async def test_scripted_reply_and_record_of_calls() -> None:
    fake = AsyncFakeClient()
    fake.add_reply("A short summary.")
    assert await summarize(fake, "a long text") == "A short summary."
    [call] = fake.calls
    assert call.method == "chat" and call.streamed and call.provider == "openai" and call.model == "gpt-x"
    assert call.messages == (UserMessage("Summarize: a long text"),)
    assert call.credential is not None and call.credential.values == {"key": "sk-test"}


async def test_default_echo_errors_and_parameters() -> None:
    fake = AsyncFakeClient()
    fake.add_error(RateLimitError("slow down", retry_after=2.0))
    async with fake.stream() as stream:
        with pytest.raises(RateLimitError) as caught:
            await stream.chat([{"role": "user", "content": "x"}]).text()
        assert caught.value.retry_after == 2.0 and caught.value.retryable and caught.value.request_id
        echoed = await stream.chat(
            [{"role": "user", "content": "echo me"}], parameters={"temperature": 0.5, "model.top_p": 1}
        ).text()
    assert echoed == "echo me"
    assert fake.calls[1].parameters == {"temperature": 0.5, "top_p": 1}


async def test_concurrent_requests_tool_calls_and_cancel() -> None:
    fake = AsyncFakeClient()
    fake.add_reply(tool_calls=[ToolCall("call_1", "lookup", '{"q": "x"}')])
    fake.add_reply("a slow reply that will be cancelled", delay=0.05)
    tool = Tool("lookup", "Look up", {"type": "object", "properties": {"q": {"type": "string"}}})
    async with fake.stream() as stream:
        tools = stream.chat([{"role": "user", "content": "use a tool"}], tools=[tool])
        slow = stream.chat([{"role": "user", "content": "slow"}], request_id="slow")
        events = [event async for event in tools]
        assert isinstance(events[0], ToolCallDelta) and (await tools.result()).tool_calls[0].name == "lookup"
        slow.cancel()
        with pytest.raises(RequestCancelledError):
            await slow.text()
    assert fake.cancelled == ["slow"]
    assert fake.calls[0].tools[0].parameters["properties"]["q"]["type"] == "string"


async def test_unary_methods_defaults_and_scripted_results() -> None:
    fake = AsyncFakeClient()
    assert (await fake.chat([{"role": "user", "content": "hi"}])).text == "hi"
    assert len((await fake.embed(["a", "b"])).vectors) == 2
    assert (await fake.rerank("cat", ["dog", "cat"])).results[0].index == 1
    assert (await fake.verify_credential(Credential.of(key="k"))).valid
    assert (await fake.moderate("text")).scores == {"flagged": 0.0}
    await fake.check_connection()
    assert (await fake.get_version()).protocol_revision >= 2

    fake.add_result(CredentialCheck(False, 401, "bad key"))
    assert not (await fake.verify_credential(Credential.of(key="k"))).valid
    fake.add_result(EmbeddingResult(()))
    with pytest.raises(TypeError, match="EmbeddingResult, but chat was called"):
        await fake.chat([{"role": "user", "content": "hi"}])
    assert [call.method for call in fake.calls][:5] == ["chat", "embed", "rerank", "verify_credential", "moderate"]


async def test_handler_decides_from_the_call() -> None:
    def handler(call: RecordedCall) -> str | None:
        return f"model {call.model} answers" if call.model else None

    fake = AsyncFakeClient(handler=handler)
    assert (await fake.chat([{"role": "user", "content": "hi"}], model="m1")).text == "model m1 answers"
    assert (await fake.chat([{"role": "user", "content": "fallback"}])).text == "fallback"


async def test_sync_fake_client_shares_the_surface() -> None:
    gateway = FakeGateway()
    fake = FakeClient(gateway)
    assert isinstance(fake, Client) and isinstance(AsyncFakeClient(), AsyncClient)
    fake.add_reply("from the script")

    def run() -> list[str]:
        with fake, fake.stream("anthropic") as stream:
            return [
                stream.chat([{"role": "user", "content": "q"}]).text(),
                fake.chat([{"role": "user", "content": "u"}]).text,
            ]

    assert await asyncio.to_thread(run) == ["from the script", "u"]
    assert [call.streamed for call in gateway.calls] == [True, False]
