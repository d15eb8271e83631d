"""The simulated provider: echo deltas, the max-tokens cut, usage, scripted tool calls and errors, and a long reply
streamed without first being built whole in memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import pytest

from integration_api.errors import Unavailable
from providers.simulated import SimulatedProvider, words
from providers.types import ChatCall, ChatEvent, SystemMessage, TextDelta, ToolCallDelta, Usage, UserMessage
from tests.providers.helpers import collect, finished, stream_error, text_of

MIB = 1024 * 1024


def chat(text: str, **parameters: object) -> ChatCall:
    return ChatCall(
        request_id="r1",
        messages=(SystemMessage("be brief"), UserMessage(text)),
        parameters={f"model.{name}": value for name, value in parameters.items()},
    )


def deltas(events: Sequence[ChatEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, TextDelta)]


@pytest.mark.parametrize("text", ["hello there world", "  lead and  double\n\nnewline trail  ", "", "   ", "one"])
async def test_echoes_one_delta_per_word_with_its_trailing_whitespace(text: str) -> None:
    events = await collect(SimulatedProvider({}).stream_chat(chat(text)))
    assert deltas(events) == words(text)
    assert text_of(events) == text.lstrip()
    done = finished(events)
    assert (done.finish_reason, done.usage) == ("stop", Usage(2 + len(words(text)), len(words(text))))


async def test_max_tokens_cuts_the_reply_and_drops_the_tool_calls() -> None:
    tools = [{"name": "lookup", "arguments": {"q": "x"}}]
    events = await collect(
        SimulatedProvider({}).stream_chat(chat("a b c d e", max_tokens=3, simulated_tool_calls=tools))
    )
    assert deltas(events) == ["a ", "b ", "c "] and not any(isinstance(e, ToolCallDelta) for e in events)
    done = finished(events)
    assert (done.finish_reason, done.usage) == ("length", Usage(7, 3))


async def test_a_reply_exactly_at_the_limit_is_not_cut() -> None:
    done = finished(await collect(SimulatedProvider({}).stream_chat(chat("a b c", max_completion_tokens=3))))
    assert (done.finish_reason, done.usage) == ("stop", Usage(5, 3))


async def test_tool_calls_count_in_the_output_usage() -> None:
    tools = [{"name": "lookup", "arguments": {"q": "x"}}, {"name": "other", "arguments": "{}"}]
    events = await collect(SimulatedProvider({}).stream_chat(chat("a b", simulated_tool_calls=tools)))
    done = finished(events)
    assert (done.finish_reason, done.usage) == ("tool_calls", Usage(4, 4))


async def test_a_scripted_error_comes_after_its_deltas() -> None:
    events, error = await stream_error(
        SimulatedProvider({}), chat("a b c d", simulated_error=503, simulated_error_after=2)
    )
    assert deltas(events) == ["a ", "b "] and isinstance(error, Unavailable)


async def test_a_long_reply_is_streamed_without_building_it_first() -> None:
    text = " ".join(f"word{i}" for i in range(200_000))  # ~2 MiB, built before measuring: it is the input
    call = chat(text)
    stream = SimulatedProvider({}).stream_chat(call)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        first = await anext(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == TextDelta("word0 ")
    assert peak - before < MIB  # a list of the 200,000 words alone is over 10 MiB
    rest = await collect(stream)
    assert text_of([first, *rest]) == text
    done = finished(rest)
    assert (done.finish_reason, done.usage) == ("stop", Usage(200_002, 200_000))
