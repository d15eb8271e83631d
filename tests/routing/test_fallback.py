"""Fallback through a real gateway to OpenAI emulators failing on purpose: before the first token only."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_api.testing.emulators import Emulator, Fault, Script
from tests.grpc_helpers import chat_request, credential
from tests.routing.conftest import chats, openai_target, routed_gateway, run_one, served_by

FAULTS = {
    "429": Fault(status=429, retry_after=0.01),
    "503": Fault(status=503),
    "529": Fault(status=529),
    "timeout": Fault(stall_after_chunks=0),  # headers, then nothing: the route's first-token timeout ends it
    "reset": Fault(reset_after_chunks=0),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_falls_back_before_the_first_token(tmp_path: Path, emulators: list[Emulator], fault: str) -> None:
    first, second = emulators
    first.default_script = Script(text="never sent", fault=FAULTS[fault])
    second.default_script = Script(text="from the second deployment")
    route = {"targets": [openai_target(first, "model-a"), openai_target(second, "model-b")],
             "first_token_timeout_ms": 300}  # fmt: skip
    async with routed_gateway(tmp_path, {"fast": route}, retry_max_attempts=1) as gateway:
        text, final = await run_one(gateway, "fast")
    assert final.success, final.error
    assert text == "from the second deployment"
    assert served_by(final) == "openai/model-b"
    assert len(chats(first)) == 1 and len(chats(second)) == 1  # no retry of the failing target: straight on
    assert chats(second)[0].body["model"] == "model-b"


async def test_no_fallback_after_the_first_token(tmp_path: Path, emulators: list[Emulator]) -> None:
    first, second = emulators
    first.default_script = Script(text="one two three four", fault=Fault(reset_after_chunks=2))
    second.default_script = Script(text="other model text")
    route = {"targets": [openai_target(first, "model-a"), openai_target(second, "model-b")]}
    async with routed_gateway(tmp_path, {"fast": route}) as gateway:
        text, final = await run_one(gateway, "fast")
    assert not final.success and final.error.status == "UNAVAILABLE"  # the one error frame
    assert text == "one two "  # only the first model's words, never the second's
    assert not chats(second)


async def test_a_non_retryable_failure_is_the_requests_unless_listed(tmp_path: Path, emulators: list[Emulator]) -> None:
    first, second = emulators
    first.default_script = Script(fault=Fault(status=400, message="context too long for this model"))
    second.default_script = Script(text="bigger context")
    targets = [openai_target(first, "small"), openai_target(second, "large")]
    async with routed_gateway(tmp_path, {"strict": {"targets": targets},
                                         "lenient": {"targets": targets, "fallback_on": [400]}}) as gateway:  # fmt: skip
        _, refused = await run_one(gateway, "strict")
        text, final = await run_one(gateway, "lenient")
    assert refused.error.status == "INVALID_ARGUMENT" and len(chats(second)) == 1
    assert final.success and text == "bigger context" and served_by(final) == "openai/large"


async def test_every_target_failing_is_the_last_failure(tmp_path: Path, emulators: list[Emulator]) -> None:
    for emulator in emulators:
        emulator.default_script = Script(fault=Fault(status=503))
    route = {"targets": [openai_target(e, f"m{i}") for i, e in enumerate(emulators)]}
    async with routed_gateway(tmp_path, {"down": route}, retry_max_attempts=2) as gateway:
        text, final = await run_one(gateway, "down")
    assert text == "" and final.error.status == "UNAVAILABLE" and final.error.retryable
    # The resilience layer outside the route retried the route as a whole once: each target twice.
    assert [len(chats(e)) for e in emulators] == [2, 2]


async def test_operator_base_urls_are_trusted_and_callers_are_not(tmp_path: Path, emulators: list[Emulator]) -> None:
    first, _ = emulators
    first.default_script = Script(text="trusted")
    route = {"targets": [openai_target(first, "model-a")]}
    async with routed_gateway(tmp_path, {"own": route}, allowed_base_urls=()) as gateway:
        text, final = await run_one(gateway, "own")
        assert final.success and text == "trusted"
        # The same URL from a caller, directly or through a route target without a credential of its own, is refused.
        stream = gateway.open_stream()
        await stream.send(chat_request("direct", provider="openai", cred=credential(key="k", base_url=first.base_url)))
        collected = await stream.read_until_done(["direct"])
        await stream.call.done_writing()
    assert collected.terminal("direct").error.status == "PERMISSION_DENIED"
    assert len(chats(first)) == 1


async def test_a_route_target_without_a_credential_gets_the_callers_through_the_allowlist(
    tmp_path: Path, emulators: list[Emulator]
) -> None:
    first, _ = emulators
    route = {"targets": [{"provider": "openai", "model": "m"}]}
    async with routed_gateway(tmp_path, {"borrowed": route}, allowed_base_urls=()) as gateway:
        stream = gateway.open_stream()
        request = chat_request("r", provider="route:borrowed", cred=credential(key="k", base_url=first.base_url))
        await stream.send(request)
        collected = await stream.read_until_done(["r"])
        await stream.call.done_writing()
    assert collected.terminal("r").error.status == "PERMISSION_DENIED" and not chats(first)
