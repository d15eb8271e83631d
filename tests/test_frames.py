"""The hand-encoded text-delta frames are byte-for-byte what protobuf would encode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_api.frames import ResponseAccumulator, TextFrameEncoder, text_frame
from integration_api.proto import integration_api_pb2 as pb
from providers.types import ToolCallDelta


@given(request_id=st.text(max_size=300), text=st.one_of(st.text(), st.text(min_size=200, max_size=20_000)))
def test_text_frames_match_protobuf_encoding(request_id: str, text: str) -> None:
    encoded = TextFrameEncoder(request_id)(text)
    assert encoded == text_frame(request_id, text).SerializeToString()
    decoded = pb.ChatResponse.FromString(encoded)
    assert decoded.requestId == request_id and list(decoded.data.assistant.contents) == [text]


def test_an_accumulator_over_its_limit_stops_keeping_the_reply() -> None:
    accumulated = ResponseAccumulator(limit=10)
    accumulated.add_text("x" * 6)
    assert not accumulated.overflowed and accumulated.texts == ["x" * 6]
    accumulated.add_text("y" * 6)
    accumulated.add_tool_call(ToolCallDelta(index=0, id="c", name="f", arguments="{}"))
    assert accumulated.overflowed and accumulated.texts == [] and accumulated.tool_calls == {}
    assert accumulated.size == 16 and accumulated.produced_output


def test_split_utf8_never_cuts_a_character_and_refuses_pieces_too_small() -> None:
    from integration_api.engine import split_utf8

    text = "a\u00e9\u20ac\U0001f600" * 50  # 1-, 2-, 3- and 4-byte characters
    pieces = list(split_utf8(text, 7))
    assert "".join(pieces) == text and all(0 < len(p.encode()) <= 7 for p in pieces)
    with pytest.raises(ValueError, match="cannot hold"):
        list(split_utf8(text, 3))
