"""The SDK client cache: reuse per credential, bounded and expiring, and never closing a client a request holds."""

from __future__ import annotations

import asyncio

from providers.clients import ClientCache, credential_digest
from tests.fake_clock import FakeClock


class FakeClient:
    """Stands in for an SDK client: all the cache does with one is call its (async) `close`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def settle() -> None:
    await asyncio.sleep(0)  # closes run as background tasks
    await asyncio.sleep(0)


async def test_one_client_per_digest_until_it_expires() -> None:
    clock = FakeClock()
    cache = ClientCache(max_size=8, ttl_s=60, clock=clock)
    first = cache.get_or_create("a", lambda: FakeClient("a1"))
    clock.now += 59
    assert cache.get_or_create("a", lambda: FakeClient("a2")) is first
    clock.now += 1  # exactly the TTL: expired
    second = cache.get_or_create("a", lambda: FakeClient("a2"))
    await settle()
    assert (second.name, first.closed, second.closed) == ("a2", True, False)


async def test_the_least_recently_used_client_goes_first() -> None:
    cache = ClientCache(max_size=2, ttl_s=60)
    a = cache.get_or_create("a", lambda: FakeClient("a"))
    b = cache.get_or_create("b", lambda: FakeClient("b"))
    cache.get_or_create("a", lambda: FakeClient("unused"))
    cache.get_or_create("c", lambda: FakeClient("c"))
    await settle()
    assert (a.closed, b.closed, len(cache)) == (False, True, 2)


async def test_an_evicted_client_in_use_closes_when_its_last_request_is_done() -> None:
    cache = ClientCache(max_size=1, ttl_s=60)
    first, second = cache.lease(), cache.lease()
    held = first.get_or_create("a", lambda: FakeClient("a"))
    assert second.get_or_create("a", lambda: FakeClient("unused")) is held
    cache.get_or_create("b", lambda: FakeClient("b"))  # evicts "a" while two requests hold it
    await settle()
    assert not held.closed
    first.release()
    first.release()  # idempotent: still one holder left
    await settle()
    assert not held.closed
    second.release()
    await settle()
    assert held.closed
    assert cache.get_or_create("a", lambda: FakeClient("a-new")).name == "a-new"


async def test_an_expired_client_in_use_closes_when_its_request_is_done() -> None:
    clock = FakeClock()
    cache = ClientCache(max_size=4, ttl_s=60, clock=clock)
    lease = cache.lease()
    held = lease.get_or_create("a", lambda: FakeClient("a"))
    clock.now += 60
    assert cache.get_or_create("a", lambda: FakeClient("a-new")).name == "a-new"  # evicts the expired one
    await settle()
    assert not held.closed
    lease.release()
    await settle()
    assert held.closed


async def test_a_released_client_that_is_still_cached_stays_open() -> None:
    cache = ClientCache(max_size=4, ttl_s=60)
    lease = cache.lease()
    client = lease.get_or_create("a", lambda: FakeClient("a"))
    lease.release()
    await settle()
    assert not client.closed
    assert cache.get_or_create("a", lambda: FakeClient("unused")) is client


async def test_shutdown_closes_every_client_held_or_not() -> None:
    cache = ClientCache(max_size=1, ttl_s=60)
    lease = cache.lease()
    retired = lease.get_or_create("a", lambda: FakeClient("a"))
    cached = cache.get_or_create("b", lambda: FakeClient("b"))
    await cache.aclose()
    assert retired.closed and cached.closed


def test_digests_differ_by_provider_credential_and_url_and_hide_the_key() -> None:
    base = credential_digest("openai", {"key": "sk-1"}, None)
    assert base == credential_digest("openai", {"key": "sk-1"}, "")
    assert len({base, credential_digest("openai", {"key": "sk-2"}, None)}) == 2
    assert base != credential_digest("azure", {"key": "sk-1"}, None)
    assert base != credential_digest("openai", {"key": "sk-1"}, "http://127.0.0.1:1/v1")
    assert "sk-1" not in base
