"""Hedged first token: a slow first target loses to the next one, is cancelled at its upstream, within a budget."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from integration_api.testing.emulators import Emulator, Fault, Script
from tests.grpc_helpers import chat_request
from tests.routing.conftest import (
    chats,
    openai_target,
    routed_gateway,
    run_one,
    served_by,
    stalled_then_fast,
    wait_until,
)
from tests.routing.local import simulated


async def test_a_stalled_first_target_loses_to_the_hedge(tmp_path: Path, emulators: list[Emulator]) -> None:
    stalled, fast = emulators
    route = stalled_then_fast(emulators, "stalled words", "fast words only")
    async with routed_gateway(tmp_path, {"hedged": route}) as gateway:
        text, final = await run_one(gateway, "hedged")
        assert final.success and text == "fast words only"
        assert served_by(final) == "openai/quick"
        assert "".join(final.data.assistant.contents) == "fast words only"
        await wait_until(lambda: chats(stalled) and chats(stalled)[0].client_disconnected)  # closed at once
    assert len(chats(stalled)) == 1 and len(chats(fast)) == 1


async def test_the_first_target_may_still_win_and_the_hedge_is_cancelled(
    tmp_path: Path, emulators: list[Emulator]
) -> None:
    late, hedge = emulators
    late.default_script = Script(text="first after all", fault=Fault(stall_after_chunks=0, stall_s=0.3))
    hedge.default_script = Script(text="never shown", fault=Fault(stall_after_chunks=0))
    route = {"targets": [openai_target(late, "a"), openai_target(hedge, "b")],
             "hedge_after_ms": 30, "hedge_budget_percent": 100}  # fmt: skip
    async with routed_gateway(tmp_path, {"hedged": route}) as gateway:
        text, final = await run_one(gateway, "hedged")
        assert text == "first after all" and served_by(final) == "openai/a"
        await wait_until(lambda: chats(hedge) and chats(hedge)[0].client_disconnected)


async def test_a_hedge_that_fails_leaves_the_first_target_running(tmp_path: Path, emulators: list[Emulator]) -> None:
    slow, broken = emulators
    slow.default_script = Script(text="slow but sure", fault=Fault(stall_after_chunks=0, stall_s=0.3))
    broken.default_script = Script(fault=Fault(status=503))
    route = {"targets": [openai_target(slow, "a"), openai_target(broken, "b")],
             "hedge_after_ms": 30, "hedge_budget_percent": 100}  # fmt: skip
    async with routed_gateway(tmp_path, {"hedged": route}, retry_max_attempts=1) as gateway:
        text, final = await run_one(gateway, "hedged")
    assert text == "slow but sure" and served_by(final) == "openai/a" and len(chats(broken)) == 1


async def test_the_hedge_budget_holds(tmp_path: Path) -> None:
    slow = {"model.simulated_reply": "slow", "model.simulated_delay_ms": 300}
    fast = {"model.simulated_reply": "fast"}
    route = {"targets": [simulated("slow", parameters=slow), simulated("fast", parameters=fast)],
             "hedge_after_ms": 20, "hedge_budget_percent": 25}  # fmt: skip
    async with routed_gateway(tmp_path, {"budget": route}, max_inflight_per_stream=64) as gateway:
        stream = gateway.open_stream()
        ids = [f"r{i}" for i in range(20)]
        await stream.send(*[chat_request(i, provider="route:budget") for i in ids])
        collected = await stream.read_until_done(ids)
        await stream.call.done_writing()
    served = Counter(collected.terminal(i).servedBy for i in ids)
    texts = {collected.text(i) for i in ids}
    assert texts == {"slow", "fast"}  # each request's text is one target's
    assert 1 <= served["simulated/fast"] <= 5, served  # 25% of 20: at most 5 hedges, each of which won


async def test_without_budget_no_request_is_hedged(tmp_path: Path) -> None:
    slow = {"model.simulated_reply": "slow", "model.simulated_delay_ms": 100}
    route = {"targets": [simulated("slow", parameters=slow), simulated("fast")],
             "hedge_after_ms": 10, "hedge_budget_percent": 0}  # fmt: skip
    async with routed_gateway(tmp_path, {"none": route}) as gateway:
        results = await asyncio.gather(*(run_one(gateway, "none", f"r{i}") for i in range(5)))
    assert {served_by(final) for _, final in results} == {"simulated/slow"}
