"""Fixtures for adapter-level tests: a provider environment that allows the local emulators' URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from integration_api.settings import Settings
from providers.base import ProviderEnv
from providers.clients import ClientCache


@pytest.fixture
def settings() -> Settings:
    return Settings(allowed_base_urls=("http://127.0.0.1:*",), connect_timeout_s=2.0, idle_timeout_s=5.0)


@pytest.fixture
async def clients() -> AsyncIterator[ClientCache]:
    """The cache behind `provider_env.clients`, as its concrete type (`ProviderEnv` only promises a `ClientSource`)."""
    cache = ClientCache(max_size=16, ttl_s=60)
    yield cache
    await cache.aclose()


@pytest.fixture
def provider_env(settings: Settings, clients: ClientCache) -> ProviderEnv:
    return ProviderEnv(settings=settings, clients=clients)
