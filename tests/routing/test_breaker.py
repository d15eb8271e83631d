"""Circuit breakers: open after failures, skip without a network call, half-open after a while, close on success."""

from __future__ import annotations

from pathlib import Path

from integration_api.proto import integration_api_pb2 as pb
from integration_api.routing.breaker import BreakerState, CircuitBreaker, HedgeBudget
from integration_api.routing.config import BreakerConfig
from integration_api.testing.emulators import Emulator, Fault, Script
from tests.conftest import RunningGateway
from tests.fake_clock import FakeClock
from tests.routing.conftest import chats, openai_target, routed_gateway, run_one, served_by


def test_consecutive_failures_open_then_a_probe_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=3, open_s=10), clock)
    for _ in range(2):
        assert breaker.allow() is False
        breaker.failure(False)
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()
    breaker.success(False)  # a success resets the run of failures
    for _ in range(3):
        breaker.allow()
        breaker.failure(False)
    assert breaker.state.value == "open" and breaker.allow() is None
    assert breaker.retry_after() == 10
    clock.now += 10
    assert breaker.state.value == "half_open"
    assert breaker.allow() is True  # the one probe
    assert breaker.allow() is None  # the others wait for it
    breaker.success(True)
    assert breaker.state is BreakerState.CLOSED and breaker.allow() is False


def test_a_failed_probe_opens_again_and_an_abandoned_one_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=1, open_s=5), clock)
    breaker.allow()
    breaker.failure(False)
    clock.now += 5
    assert breaker.allow() is True
    breaker.abandon(True)  # a hedge that lost, a client that left: no verdict
    assert breaker.allow() is True
    breaker.failure(True)
    assert breaker.state is BreakerState.OPEN and breaker.retry_after() == 5


def test_an_error_rate_over_the_window_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=100, error_rate=0.5, min_requests=10, window_s=10), clock)
    for i in range(9):  # alternate: never two failures in a row, 4 of 9 failed
        breaker.allow()
        if i % 2:
            breaker.failure(False)
        else:
            breaker.success(False)
    assert breaker.state is BreakerState.CLOSED  # fewer than min_requests
    breaker.allow()
    breaker.failure(False)  # 5 of 10
    assert breaker.state.value == "open"
    # Failures that have left the window no longer count.
    fresh = CircuitBreaker(BreakerConfig(failures=100, error_rate=0.5, min_requests=4, window_s=10), clock)
    for _ in range(3):
        fresh.failure(False)
    clock.now += 11
    fresh.success(False)
    fresh.failure(False)
    assert fresh.state is BreakerState.CLOSED


def test_hedge_budget_allows_a_share_of_requests() -> None:
    clock = FakeClock()
    budget = HedgeBudget(10, 60, clock)
    granted = 0
    for _ in range(100):
        budget.request()
        granted += budget.try_hedge()
    assert granted == 10
    clock.now += 61  # the window moved on: the old requests no longer earn hedges, nor do old hedges count
    budget.request()
    assert not budget.try_hedge()


async def test_an_open_circuit_skips_its_target_without_a_call(tmp_path: Path, emulators: list[Emulator]) -> None:
    sick, healthy = emulators
    sick.default_script = Script(fault=Fault(status=503))
    healthy.default_script = Script(text="healthy")
    route = {"targets": [openai_target(sick, "a"), openai_target(healthy, "b")],
             "breaker": {"failures": 2, "open_s": 30}}  # fmt: skip
    async with routed_gateway(tmp_path, {"guarded": route}, retry_max_attempts=1) as gateway:
        clock = FakeClock()
        gateway.server.gateway.routes.clock = clock
        for request in range(4):
            text, final = await run_one(gateway, "guarded", f"r{request}")
            assert final.success and text == "healthy"
        assert len(chats(sick)) == 2  # opened after two failures; the next requests never reached it
        assert await breaker_states(gateway) == ["open", "closed"]

        sick.default_script = Script(text="recovered")
        clock.now += 30  # half-open: the next request is a probe, and its success closes the circuit
        assert await breaker_states(gateway) == ["half_open", "closed"]
        text, final = await run_one(gateway, "guarded", "probe")
        assert text == "recovered" and served_by(final) == "openai/a"
        assert await breaker_states(gateway) == ["closed", "closed"]


async def test_every_circuit_open_is_unavailable_at_once(tmp_path: Path, emulators: list[Emulator]) -> None:
    sick, _ = emulators
    sick.default_script = Script(fault=Fault(status=503))
    route = {"targets": [openai_target(sick, "a")], "breaker": {"failures": 1, "open_s": 30}}
    async with routed_gateway(tmp_path, {"alone": route}, retry_max_attempts=1) as gateway:
        gateway.server.gateway.routes.clock = FakeClock()
        await run_one(gateway, "alone", "trip")
        _, final = await run_one(gateway, "alone", "skipped")
    assert final.error.status == "UNAVAILABLE" and "circuit open" in final.error.errorMessage
    assert final.error.retryAfterMs == 30_000
    assert len(chats(sick)) == 1


async def breaker_states(gateway: RunningGateway) -> list[str]:
    response = await gateway.unified.GetRoutes(pb.GetRoutesRequest(), metadata=gateway.metadata)
    (route,) = response.routes
    return [target.breakerState for target in route.targets]
