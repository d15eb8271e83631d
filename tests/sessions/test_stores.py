"""The `SessionStore` contract, one suite run against both stores (SQLite in a temporary dir, the local Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_api.sessions.redis_store import RedisSessionStore
from integration_api.sessions.sqlite_store import SqliteSessionStore
from integration_api.sessions.store import Owner, Session, SessionStore
from providers.types import AssistantMessage, ToolCall, ToolMessage, ToolResult, UserMessage

TTL = 100.0
NOW = 1_800_000_000.0
ME, OTHER = Owner("org-1", "proj-1"), Owner("org-2", "proj-2")


@pytest.fixture
async def store(tmp_path: Path, store_kind: str, redis_url: str | None) -> AsyncIterator[SessionStore]:
    opened: SessionStore = (
        RedisSessionStore(redis_url, TTL) if redis_url is not None else SqliteSessionStore(tmp_path, TTL)
    )
    yield opened
    await opened.aclose()


def session(session_id: str = "s1", owner: Owner = ME, at: float = NOW) -> Session:
    return Session(session_id, owner, "simulated", "Be brief.", {"model.name": "m"}, created_at=at, last_used_at=at)


async def test_create_then_get_round_trips_every_field(store: SessionStore) -> None:
    messages = (
        UserMessage("hi"),
        AssistantMessage("calling", (ToolCall("c1", "tool", '{"a": 1}', 0),)),
        ToolMessage((ToolResult("c1", "tool", "done"),)),
    )
    original = dataclasses.replace(session(), messages=messages, requests=3, input_tokens=7, output_tokens=9)
    await store.create(original, NOW)
    assert await store.get(ME, "s1", NOW) == original


async def test_another_owner_sees_nothing(store: SessionStore) -> None:
    await store.create(session(), NOW)
    assert await store.get(OTHER, "s1", NOW) is None
    assert await store.list(OTHER, NOW) == []
    assert not await store.delete(OTHER, "s1", NOW)
    assert not await store.replace(dataclasses.replace(session(owner=OTHER), revision=1), 0, NOW)
    assert await store.get(ME, "s1", NOW) == session()


async def test_replace_is_compare_and_set_on_the_revision(store: SessionStore) -> None:
    await store.create(session(), NOW)
    turn = dataclasses.replace(session(), messages=(UserMessage("one"),), revision=1, last_used_at=NOW + 1)
    assert await store.replace(turn, 0, NOW + 1)
    stale = dataclasses.replace(session(), messages=(UserMessage("lost"),), revision=1, last_used_at=NOW + 2)
    assert not await store.replace(stale, 0, NOW + 2)  # read at revision 0, but the store is at 1 now
    assert await store.get(ME, "s1", NOW + 2) == turn


async def test_turns_ending_together_each_get_their_own_compare_and_set(store: SessionStore) -> None:
    # Both stores write the turns that end while a write is in flight together (SQLite: one transaction; Redis:
    # one script call): each must still be checked on its own revision, answered on its own, in order.
    ids = [f"s{index}" for index in range(12)]
    for session_id in ids:
        await store.create(session(session_id), NOW)

    def turn(session_id: str, text: str) -> Session:
        return dataclasses.replace(session(session_id), messages=(UserMessage(text),), revision=1, last_used_at=NOW + 1)

    writes = [store.replace(turn(session_id, f"{session_id} one"), 0, NOW + 1) for session_id in ids]
    # Rivals read at the same revision as an earlier turn of the same session: the earlier of each pair, in the
    # order they were submitted, is kept, and the rival refused.
    writes += [store.replace(turn(rival, f"{rival} rival"), 0, NOW + 1) for rival in ("s0", "s5")]
    answers = await asyncio.gather(*writes)
    assert answers == [True] * 12 + [False, False]
    for session_id in ids:
        assert await store.get(ME, session_id, NOW + 1) == turn(session_id, f"{session_id} one")


async def test_a_session_unused_for_the_ttl_is_gone(store: SessionStore) -> None:
    await store.create(session(), NOW)
    assert await store.get(ME, "s1", NOW + TTL - 1) is not None
    assert await store.count_active(NOW + TTL - 1) == 1
    assert await store.get(ME, "s1", NOW + TTL) is None
    assert await store.list(ME, NOW + TTL) == []
    assert await store.count_active(NOW + TTL) == 0
    assert not await store.replace(dataclasses.replace(session(), revision=1), 0, NOW + TTL)
    assert not await store.delete(ME, "s1", NOW + TTL)


async def test_a_write_extends_the_ttl(store: SessionStore) -> None:
    await store.create(session(), NOW)
    assert await store.replace(dataclasses.replace(session(), revision=1, last_used_at=NOW + 50), 0, NOW + 50)
    assert await store.get(ME, "s1", NOW + TTL + 10) is not None


async def test_list_is_most_recent_first_and_bounded(store: SessionStore) -> None:
    for number in range(3):
        await store.create(session(f"s{number}", at=NOW + number), NOW + number)
    await store.create(session("theirs", OTHER), NOW)
    assert [s.id for s in await store.list(ME, NOW + 3)] == ["s2", "s1", "s0"]
    assert [s.id for s in await store.list(ME, NOW + 3, limit=2)] == ["s2", "s1"]
    assert await store.count_active(NOW + 3) == 4


async def test_delete(store: SessionStore) -> None:
    await store.create(session(), NOW)
    assert await store.delete(ME, "s1", NOW)
    assert await store.get(ME, "s1", NOW) is None
    assert not await store.delete(ME, "s1", NOW)
    assert await store.count_active(NOW) == 0
