"""Load balancing across targets of equal rank: weighted random, least-in-flight, concurrency caps."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from integration_api.errors import ResourceExhausted
from providers.types import ChatCall, UserMessage
from tests.routing.conftest import wait_until
from tests.routing.local import LocalRoutes, simulated

SLOW = {"model.simulated_reply": "slow", "model.simulated_delay_ms": 10_000}  # holds its target until cancelled


@asynccontextmanager
async def holding(local: LocalRoutes, route: str, request_id: str, slow: bool = False) -> AsyncIterator[None]:
    """A request in flight on `route` (waiting for a slow first token) for the length of the block."""
    provider, _ = local.provider(route, request_id)
    stream = provider.stream_chat(ChatCall(request_id, (UserMessage("x"),), SLOW if slow else {}))
    before = sum(t.in_flight for t in local.router.routes[route].targets)
    pending = asyncio.ensure_future(anext(stream))
    await wait_until(lambda: sum(t.in_flight for t in local.router.routes[route].targets) > before)
    try:
        yield
    finally:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await stream.aclose()


async def test_weighted_random_follows_the_weights_over_1000_requests(tmp_path: Path) -> None:
    targets = [simulated("heavy", weight=3, rank=0), simulated("light", weight=1, rank=0), simulated("backup", rank=5)]
    local = LocalRoutes(tmp_path, {"spread": {"targets": targets}})
    served = Counter([(await local.chat("spread", request_id=str(i))).servedBy for i in range(1000)])
    assert set(served) == {"simulated/heavy", "simulated/light"}  # the lower rank is only a fallback
    assert 690 <= served["simulated/heavy"] <= 810, served  # 750 expected, +-4.4 standard deviations (13.7)


async def test_targets_are_tried_in_list_order_by_default(tmp_path: Path) -> None:
    local = LocalRoutes(tmp_path, {"ordered": {"targets": [simulated("first"), simulated("second")]}})
    served = {(await local.chat("ordered", request_id=str(i))).servedBy for i in range(50)}
    assert served == {"simulated/first"}


async def test_least_in_flight_prefers_the_idle_target(tmp_path: Path) -> None:
    targets = [simulated("a", rank=0, parameters=SLOW), simulated("b", rank=0, parameters=SLOW)]
    local = LocalRoutes(tmp_path, {"idle": {"targets": targets, "balance": "least_in_flight"}})
    route = local.router.routes["idle"]
    for round_ in range(20):  # wherever the first request lands, the second goes to the other target
        async with holding(local, "idle", f"first-{round_}"):
            assert len([t for t in route.targets if t.in_flight]) == 1
            async with holding(local, "idle", f"second-{round_}"):
                assert all(t.in_flight == 1 for t in route.targets)
        assert not any(t.in_flight for t in route.targets)


async def test_weighted_balance_ignores_load(tmp_path: Path) -> None:
    """The control for the test above: without least_in_flight, a busy target keeps getting its share."""
    targets = [simulated("a", rank=0, parameters=SLOW), simulated("b", rank=0, parameters=SLOW)]
    local = LocalRoutes(tmp_path, {"blind": {"targets": targets}})
    route = local.router.routes["blind"]
    doubled = 0
    for round_ in range(20):
        async with holding(local, "blind", f"first-{round_}"), holding(local, "blind", f"second-{round_}"):
            doubled += any(t.in_flight == 2 for t in route.targets)
    assert doubled > 0


async def test_a_target_at_its_cap_is_skipped(tmp_path: Path) -> None:
    targets = [simulated("capped", max_concurrent=1), simulated("overflow")]
    local = LocalRoutes(tmp_path, {"capped": {"targets": targets}, "alone": {"targets": targets[:1]}})
    async with holding(local, "capped", "hold", slow=True):
        assert (await local.chat("capped", request_id="next")).servedBy == "simulated/overflow"
    assert (await local.chat("capped", request_id="after")).servedBy == "simulated/capped"
    async with holding(local, "alone", "hold", slow=True):
        with pytest.raises(ResourceExhausted) as refused:
            await local.chat("alone", request_id="refused")
    assert refused.value.retryable
