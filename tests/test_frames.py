"""The hand-encoded text-delta frames are byte-for-byte what protobuf would encode."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from integration_api.frames import TextFrameEncoder, text_frame
from integration_api.proto import integration_api_pb2 as pb


@given(request_id=st.text(max_size=300), text=st.one_of(st.text(), st.text(min_size=200, max_size=20_000)))
def test_text_frames_match_protobuf_encoding(request_id: str, text: str) -> None:
    encoded = TextFrameEncoder(request_id)(text)
    assert encoded == text_frame(request_id, text).SerializeToString()
    decoded = pb.ChatResponse.FromString(encoded)
    assert decoded.requestId == request_id and list(decoded.data.assistant.contents) == [text]
