"""Helpers shared by the adapter-level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from integration_api.errors import GatewayError
from providers.base import Provider
from providers.types import ChatCall, ChatEvent, ChatFinished, TextDelta, ToolCallDelta


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


def text_of(events: list[ChatEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def tool_calls_of(events: list[ChatEvent]) -> dict[int, dict[str, str]]:
    """Reassemble tool-call deltas by index into {index: {"id", "name", "arguments"}}."""
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name
            call["arguments"] += event.arguments
    return calls


def finished(events: list[ChatEvent]) -> ChatFinished:
    last = events[-1]
    assert isinstance(last, ChatFinished), f"last event is {last!r}"
    return last


async def stream_error(provider: Provider, call: ChatCall) -> tuple[list[ChatEvent], GatewayError]:
    """The events a provider yielded before its stream failed, and the error it failed with."""
    events: list[ChatEvent] = []
    with pytest.raises(GatewayError) as info:
        async for event in provider.stream_chat(call):
            events.append(event)
    return events, info.value


# The `openai` and `azure` adapters send a model's first chat request through the SDK and replay it afterwards
# (`providers._openai_transport`): their tests run once on each path.
SEND_PATHS = ("sdk", "replay")


async def on_send_path(path: str, provider: Provider, warm_up: ChatCall) -> Provider:
    """`provider`, after one successful chat `warm_up` when `path` is "replay" (so the next chats replay)."""
    if path == "replay":
        finished(await collect(provider.stream_chat(warm_up)))
    return provider
