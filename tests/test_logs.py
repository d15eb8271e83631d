"""`configure_logging`: our loggers at LOG_LEVEL, every other logger (grpc, asyncio, SDKs) at LOG_LEVEL_THIRD_PARTY."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from integration_api.logs import OUR_LOGGERS, configure_logging
from integration_api.settings import Settings

THIRD_PARTY = ("grpc", "grpc._cython.cygrpc", "asyncio", "aiohttp.client", "httpx", "httpcore", "openai", "anthropic")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ours = {name: logging.getLogger(name).level for name in OUR_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in ours.items():
        logging.getLogger(name).setLevel(saved)


def test_debug_is_ours_only() -> None:
    configure_logging(Settings(log_level="DEBUG"))
    for name in ("integration_api.server", "providers.openai", "auth.authenticator"):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    for name in THIRD_PARTY:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


def test_third_parties_at_debug_when_asked() -> None:
    configure_logging(Settings(log_level="WARNING", log_level_third_party="DEBUG"))
    assert not logging.getLogger("integration_api.server").isEnabledFor(logging.INFO)
    for name in THIRD_PARTY:
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name
