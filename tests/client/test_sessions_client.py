"""The client's session API against a real gateway: create, chat with only the new message, inspect, list,
delete, server stats; typed results (no generated class), errors typed; the sync twin."""

from __future__ import annotations

import asyncio

import pytest

from integration_api.client import (
    AsyncClient,
    Client,
    NotFoundError,
    ServerStats,
    SessionInfo,
    UnimplementedError,
    UserMessage,
)
from integration_api.client._types import AssistantMessage, SystemMessage
from integration_api.testing import AsyncFakeClient
from tests.client.conftest import SIM, async_client_for, user
from tests.conftest import RunningGateway


async def test_create_session_returns_typed_info(client: AsyncClient) -> None:
    info = await client.create_session(SIM, "echo", system="Be brief.", parameters={"temperature": 0.5})

    assert isinstance(info, SessionInfo)
    assert info.id.startswith("sess_")
    assert (info.provider, info.model, info.system_prompt) == (SIM, "echo", "Be brief.")
    assert info.parameters == {"name": "echo", "temperature": 0.5}
    assert (info.organization_id, info.project_id) == ("org-1", "proj-1")
    assert info.message_count == info.request_count == 0
    assert 0 < info.created_at <= info.last_used_at < info.expires_at


async def test_a_session_keeps_the_conversation(client: AsyncClient) -> None:
    info = await client.create_session(SIM, system="You echo.")
    async with client.stream(SIM) as stream:
        first = await stream.chat(user("one two three"), session_id=info.id).result()
        second = await stream.chat(user("four"), session_id=info.id).result()

    assert (first.text, second.text) == ("one two three", "four")  # the simulated provider echoes the last message
    # The second request sent one short message, but the provider saw the whole conversation.
    assert second.usage.input_tokens > first.usage.input_tokens
    kept = await client.get_session(info.id, include_messages=True)
    assert kept.message_count == 4
    assert kept.request_count == 2
    assert kept.input_tokens == first.usage.input_tokens + second.usage.input_tokens
    assert kept.messages == (
        UserMessage("one two three"),
        AssistantMessage("one two three"),
        UserMessage("four"),
        AssistantMessage("four"),
    )
    assert not any(isinstance(message, SystemMessage) for message in kept.messages)
    assert (await client.get_session(info.id)).messages == ()  # the history only when asked for


async def test_session_defaults_reach_the_provider(client: AsyncClient) -> None:
    info = await client.create_session(SIM, parameters={"simulated_reply": "fixed"})
    async with client.stream(SIM) as stream:
        assert await stream.chat(user("hello"), session_id=info.id).text() == "fixed"
        # a request's own parameters win over the session's
        reply = await stream.chat(user("hello"), session_id=info.id, parameters={"simulated_reply": "mine"}).text()
    assert reply == "mine"


async def test_list_sessions_most_recent_first(client: AsyncClient) -> None:
    first = await client.create_session(SIM)
    second = await client.create_session(SIM)
    async with client.stream(SIM) as stream:
        await stream.chat(user("use me"), session_id=first.id).result()

    listed = await client.list_sessions()
    assert [info.id for info in listed] == [first.id, second.id]
    assert all(isinstance(info, SessionInfo) and info.messages == () for info in listed)
    assert [info.id for info in await client.list_sessions(limit=1)] == [first.id]


async def test_delete_session(client: AsyncClient) -> None:
    info = await client.create_session(SIM)
    await client.delete_session(info.id)

    with pytest.raises(NotFoundError):
        await client.get_session(info.id)
    with pytest.raises(NotFoundError):
        await client.delete_session(info.id)
    assert await client.list_sessions() == []
    async with client.stream(SIM) as stream:
        with pytest.raises(NotFoundError):
            await stream.chat(user("anyone?"), session_id=info.id).result()
        assert await stream.chat(user("still open"), model="echo").text() == "still open"  # the stream goes on


async def test_unknown_session_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.get_session("sess_nope")
    assert caught.value.code == 404


async def test_another_projects_session_is_not_found(gateway: RunningGateway, client: AsyncClient) -> None:
    mine = await client.create_session(SIM)
    other_key, _ = gateway.store.create(name="other", organization_id="org-2", project_id="proj-2")
    async with AsyncClient(f"127.0.0.1:{gateway.server.port}", api_key=other_key) as other:
        with pytest.raises(NotFoundError):
            await other.get_session(mine.id)
        with pytest.raises(NotFoundError):
            await other.delete_session(mine.id)
        assert await other.list_sessions() == []
    assert (await client.get_session(mine.id)).id == mine.id


async def test_server_stats(client: AsyncClient) -> None:
    info = await client.create_session(SIM)
    async with client.stream(SIM) as stream:
        await stream.chat(user("count me"), session_id=info.id).result()
        stats = await client.server_stats()

    assert isinstance(stats, ServerStats)
    assert stats.uptime_s > 0
    assert stats.requests_total >= 1
    assert stats.requests_succeeded >= 1
    assert stats.sessions_created >= 1
    assert stats.sessions_active >= 1
    assert stats.active_streams >= 1
    assert stats.total_time.count >= 1
    simulated = {p.provider: p for p in stats.providers}[SIM]
    assert simulated.requests_succeeded >= 1


async def test_ping_round_trip(client: AsyncClient) -> None:
    async with client.stream(SIM) as stream:
        assert await stream.ping() >= 0


async def test_concurrent_turns_on_one_session_both_kept(gateway: RunningGateway) -> None:
    async with async_client_for(gateway) as client:
        info = await client.create_session(SIM)
        async with client.stream(SIM) as stream:
            slow = {"simulated_delay_ms": 20}
            results = await asyncio.gather(
                stream.chat(user("a b c"), session_id=info.id, parameters=slow).result(),
                stream.chat(user("d e f"), session_id=info.id, parameters=slow).result(),
            )
        assert sorted(result.text for result in results) == ["a b c", "d e f"]
        assert (await client.get_session(info.id)).message_count == 4


async def test_the_sync_client_has_the_session_api(sync_client: Client) -> None:
    def run() -> None:
        info = sync_client.create_session(SIM, system="sync")
        with sync_client.stream(SIM) as stream:
            assert stream.chat(user("hi sync"), session_id=info.id).text() == "hi sync"
        assert sync_client.get_session(info.id).message_count == 2
        assert [s.id for s in sync_client.list_sessions()] == [info.id]
        assert sync_client.server_stats().sessions_created >= 1
        sync_client.delete_session(info.id)
        assert sync_client.list_sessions() == []

    await asyncio.to_thread(run)


async def test_the_fake_client_says_it_keeps_no_sessions() -> None:
    async with AsyncFakeClient() as fake:
        with pytest.raises(UnimplementedError):
            await fake.create_session(SIM)
