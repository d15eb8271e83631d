"""The server-sent-events decoder of `providers._sse`, fed the way a network delivers bytes."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers._sse import ServerSentEvent, SSEDecoder, SSEError, aiter_events


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    """Every event of a body delivered as `chunks`, the end of the stream included."""
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


def split_everywhere(body: bytes) -> Iterable[tuple[bytes, bytes]]:
    return ((body[:i], body[i:]) for i in range(len(body) + 1))


OPENAI_LIKE = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
EXPECTED = [ServerSentEvent("", b'{"a": 1}'), ServerSentEvent("", b'{"b": 2}'), ServerSentEvent("", b"[DONE]")]


def test_one_event_per_blank_line() -> None:
    assert decode(OPENAI_LIKE) == EXPECTED


def test_an_event_is_returned_by_the_read_that_completes_it() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}\n') == []
    assert decoder.feed(b"\ndata: x") == [ServerSentEvent("", b'{"a": 1}')]
    assert decoder.feed(b"\n\n") == [ServerSentEvent("", b"x")]
    assert decoder.flush() == []


def test_lines_split_anywhere_across_reads() -> None:
    for head, tail in split_everywhere(OPENAI_LIKE):
        assert decode(head, tail) == EXPECTED, (head, tail)


def test_one_byte_at_a_time() -> None:
    assert decode(*(OPENAI_LIKE[i : i + 1] for i in range(len(OPENAI_LIKE)))) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending(newline: bytes) -> None:
    body = OPENAI_LIKE.replace(b"\n", newline)
    assert decode(body) == EXPECTED
    for head, tail in split_everywhere(body):  # a CRLF split between two reads is one line end
        assert decode(head, tail) == EXPECTED, (head, tail)


def test_two_carriage_returns_are_two_line_ends() -> None:
    assert decode(b"data: a\r\r", b"data: b\r\r") == [ServerSentEvent("", b"a"), ServerSentEvent("", b"b")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert decode(b"data: first\ndata: second\ndata:third\n\n") == [ServerSentEvent("", b"first\nsecond\nthird")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert decode(b"data:  two spaces\n\n") == [ServerSentEvent("", b" two spaces")]


def test_comments_and_keep_alives_are_ignored() -> None:
    body = b": keep-alive\n\n:ping\ndata: x\n: inside an event\n\n"
    assert decode(body) == [ServerSentEvent("", b"x")]


def test_event_names() -> None:
    body = b"event: content_block_delta\ndata: {}\n\nevent:ping\ndata: p\n\ndata: nameless\n\n"
    assert decode(body) == [
        ServerSentEvent("content_block_delta", b"{}"),
        ServerSentEvent("ping", b"p"),
        ServerSentEvent("", b"nameless"),  # a name does not carry over to the next event
    ]


def test_replicates_events() -> None:
    """Replicate's stream: named events with ``id:`` lines, multi-line text output, its ``:408`` keep-alive."""
    body = (
        b"event: output\nid: 1735689601:0\ndata: one\n\n:408\n\n"
        b"event: output\nid: 1735689602:0\ndata: two\ndata: lines\n\n"
        b'event: error\nid: 1735689603:0\ndata: {"detail": "boom"}\n\nevent: done\nid: 1735689604:0\ndata: {}\n\n'
    )
    assert decode(body) == [
        ServerSentEvent("output", b"one"),
        ServerSentEvent("output", b"two\nlines"),
        ServerSentEvent("error", b'{"detail": "boom"}'),
        ServerSentEvent("done", b"{}"),
    ]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decode(b"event: lonely\n\nid: 7\nretry: 100\n\ndata: x\n\n") == [ServerSentEvent("", b"x")]


def test_empty_data_lines() -> None:
    assert decode(b"data\n\ndata:\ndata:\n\n") == [ServerSentEvent("", b""), ServerSentEvent("", b"\n")]


def test_unknown_fields_and_lines_without_a_colon_are_ignored() -> None:
    assert decode(b"foo: bar\nnonsense\ndata: x\n\n") == [ServerSentEvent("", b"x")]


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_a_final_event_without_a_trailing_blank_line_is_dispatched(ending: bytes) -> None:
    assert decode(b"data: a\n\ndata: [DONE]" + ending) == [ServerSentEvent("", b"a"), ServerSentEvent("", b"[DONE]")]


def test_a_leading_byte_order_mark_is_skipped() -> None:
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent("", b"x")]


def test_data_is_not_decoded() -> None:
    text = "données: ünïcödé ✓".encode()
    assert decode(b"data: " + text + b"\n\n") == [ServerSentEvent("", text)]


def test_a_line_over_the_limit_is_an_error() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    decoder.feed(b"data: " + b"x" * 40)
    with pytest.raises(SSEError):
        decoder.feed(b"x" * 40)


def test_an_event_over_the_limit_is_an_error() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(SSEError):
        decoder.feed(b"data: " + b"x" * 30 + b"\n" + b"data: " + b"x" * 40 + b"\n")


def test_the_limit_is_per_event() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    events = [event for _ in range(10) for event in decoder.feed(b"data: " + b"x" * 40 + b"\n\n")]
    assert len(events) == 10


CRLF_BODY = b": hello\r\n" + OPENAI_LIKE.replace(b"\n", b"\r\n")


@given(st.lists(st.integers(min_value=0, max_value=len(CRLF_BODY)), max_size=8))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(CRLF_BODY)]
    assert decode(*(CRLF_BODY[a:b] for a, b in itertools.pairwise(points))) == EXPECTED


async def test_aiter_events_yields_each_event_as_its_read_arrives() -> None:
    reads: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"data: a\n\nda", b"ta: b\n\n", b"data: c"):
            reads.append(chunk)
            yield chunk

    seen = []
    async for event in aiter_events(body()):
        seen.append((event.data, len(reads)))
    assert seen == [(b"a", 1), (b"b", 2), (b"c", 3)]
