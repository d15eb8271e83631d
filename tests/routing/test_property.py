"""Property: over random failure scripts, a routed request ends with exactly one terminal frame, and its text (deltas
and final frame) is one target's only."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_api.proto import integration_api_pb2 as pb
from tests.conftest import make_settings, start_gateway
from tests.grpc_helpers import chat_request
from tests.routing.local import simulated

REQUESTS = 3


def reply(index: int) -> str:
    return f"t{index}-a t{index}-b t{index}-c"


@st.composite
def targets(draw: st.DrawFn, index: int) -> dict[str, Any]:
    parameters: dict[str, Any] = {"model.simulated_reply": reply(index)}
    error = draw(st.sampled_from([None, None, 429, 503, 500, 400]))
    if error is not None:
        parameters["model.simulated_error"] = error
        parameters["model.simulated_error_after"] = draw(st.integers(0, 2))
    delay = draw(st.sampled_from([0, 0, 5, 30]))
    if delay:
        parameters["model.simulated_delay_ms"] = delay
    return simulated(f"m{index}", parameters=parameters, rank=draw(st.sampled_from([None, 0])))


@st.composite
def routes(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    route: dict[str, Any] = {"targets": [draw(targets(i)) for i in range(count)]}
    route["hedge_after_ms"] = draw(st.sampled_from([None, 3, 15]))
    route["hedge_budget_percent"] = draw(st.sampled_from([0, 50, 100]))
    route["first_token_timeout_ms"] = draw(st.sampled_from([None, 20]))
    route["fallback_on"] = draw(st.sampled_from([[], [400]]))
    route["breaker"] = {"failures": draw(st.integers(1, 5)), "open_s": 0.05}
    return route


async def _serve(route: dict[str, Any], data_dir: Path) -> list[pb.ChatResponse]:
    config = make_settings(data_dir, routes={"p": route}, retry_max_attempts=2)
    gateway = await start_gateway(config)
    try:
        stream = gateway.open_stream()
        await stream.send(*[chat_request(f"r{i}", provider="route:p") for i in range(REQUESTS)])
        await stream.call.done_writing()
        collected = await stream.read_to_end(timeout=20)
        return collected.order
    finally:
        await gateway.channel.close()
        await gateway.server.stop()


def _check(frames: list[pb.ChatResponse], count: int) -> None:
    for request in range(REQUESTS):
        own = [f for f in frames if f.requestId == f"r{request}"]
        terminals = [i for i, f in enumerate(own) if f.final]
        assert len(terminals) == 1 and terminals[0] == len(own) - 1, own  # one terminal frame, and nothing after
        text = "".join("".join(f.data.assistant.contents) for f in own[:-1])
        terminal = own[-1]
        words = text.split()
        authors = {word.split("-")[0] for word in words}
        assert len(authors) <= 1, text  # never two targets' text
        if terminal.success:
            index = int(terminal.servedBy.removeprefix("simulated/m"))
            assert text == reply(index) == "".join(terminal.data.assistant.contents)
        elif words:
            index = int(next(iter(authors)).removeprefix("t"))
            assert index < count and reply(index).startswith(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=routes())
def test_one_terminal_frame_and_one_targets_text(route: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        frames = asyncio.run(_serve(route, Path(data_dir)))
    _check(frames, len(route["targets"]))
