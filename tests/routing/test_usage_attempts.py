"""Every attempt of a routed request is in the usage log: the served one, each target it fell back from, and a
hedge that lost the race."""

from __future__ import annotations

from pathlib import Path

from integration_api.testing.emulators import Emulator, Fault, Script
from tests.conftest import RunningGateway
from tests.routing.conftest import openai_target, routed_gateway, run_one, stalled_then_fast
from tests.usage.conftest import read_records


async def records_of(gateway: RunningGateway, request_id: str) -> list[tuple[str, str, str]]:
    server = gateway.server
    await server.gateway.state.usage.flush()
    return sorted(
        (r.provider, r.model, r.status) for r in await read_records(server.settings) if r.request_id == request_id
    )


async def test_a_fallback_leaves_a_record_per_target(tmp_path: Path, emulators: list[Emulator]) -> None:
    first, second = emulators
    first.default_script = Script(fault=Fault(status=503))
    second.default_script = Script(text="served")
    route = {"targets": [openai_target(first, "model-a"), openai_target(second, "model-b")]}
    async with routed_gateway(tmp_path, {"fast": route}, retry_max_attempts=1) as gateway:
        _, final = await run_one(gateway, "fast", request_id="fb")
        assert final.success
        assert await records_of(gateway, "fb") == [("openai", "model-a", "UNAVAILABLE"), ("openai", "model-b", "OK")]


async def test_a_lost_hedge_is_recorded_as_cancelled(tmp_path: Path, emulators: list[Emulator]) -> None:
    route = stalled_then_fast(emulators, "stalled", "fast")
    async with routed_gateway(tmp_path, {"hedged": route}) as gateway:
        _, final = await run_one(gateway, "hedged", request_id="h")
        assert final.success
        assert await records_of(gateway, "h") == [("openai", "quick", "OK"), ("openai", "slow", "CANCELLED")]
