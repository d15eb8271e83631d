"""integration_api.requests: what the fuzzer found (tests/fuzz/), kept as regression tests.

`_peek_request_id` names the request an undecodable StreamChat message's error frame answers, so it must read the
requestId the decoder would have read.
"""

from __future__ import annotations

import pytest

from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import MAX_REQUEST_ID_LENGTH, UndecodableRequest, _peek_request_id, decode_chat_request
from tests.fuzz.harness import check_one_input
from tests.fuzz.seeds import INVALID_UTF8, length_delimited, varint

START_GROUP, END_GROUP = 3, 4


def _group(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | START_GROUP) + payload + varint(field << 3 | END_GROUP)


def test_the_last_request_id_wins_as_in_the_decoder() -> None:
    # Found by the fuzzer: a field repeated on the wire (a merge of two messages) used to peek the first one.
    raw = length_delimited(3, b"first") + length_delimited(3, b"last")
    assert decode_chat_request(raw).requestId == "last"
    assert _peek_request_id(raw) == "last"
    check_one_input(raw)


def test_a_request_id_inside_an_unknown_group_is_not_the_request_id() -> None:
    raw = _group(15, length_delimited(3, b"nested")) + length_delimited(3, b"top")
    assert decode_chat_request(raw).requestId == "top"
    assert _peek_request_id(_group(15, length_delimited(3, b"nested"))) == ""
    assert _peek_request_id(raw) == "top"
    check_one_input(raw)


def test_an_undecodable_request_is_named_by_its_last_readable_request_id() -> None:
    broken_content = pb.ChatRequest(conversations=[pb.Message(user=pb.UserMessage(content="\xff"))]).SerializeToString()
    broken_content = broken_content.replace("\xff".encode(), bytes([INVALID_UTF8, INVALID_UTF8]))
    raw = length_delimited(3, b"one") + length_delimited(3, b"two") + broken_content
    with pytest.raises(UndecodableRequest) as caught:
        decode_chat_request(raw)
    assert caught.value.request_id == "two"
    assert _peek_request_id(raw + b"\xff\xff") == "two"  # the wire breaks after the id: what was read stands


@pytest.mark.parametrize(
    "raw",
    [
        length_delimited(3, b"x" * (MAX_REQUEST_ID_LENGTH + 1)),
        length_delimited(3, "é".encode() * (MAX_REQUEST_ID_LENGTH + 1)),
        length_delimited(3, b"ok") + length_delimited(3, bytes([INVALID_UTF8])),
        length_delimited(3, b"ok") + varint(3 << 3 | 2) + varint(10) + b"cut",
        length_delimited(3, b"ok") + varint(3 << 3 | 2) + varint(2**62),
    ],
    ids=["too-long", "too-long-multibyte", "not-utf8", "cut-short", "huge-length"],
)
def test_an_unusable_last_request_id_peeks_empty(raw: bytes) -> None:
    assert _peek_request_id(raw) == ""
    check_one_input(raw)


def test_a_map_entry_with_an_unknown_field_decodes_to_the_same_request_again() -> None:
    # Found by the fuzzer (make fuzz, 2026-12-01): a credential Struct whose map entry carries an unknown field and
    # a nested Struct. protobuf (upb) keeps that entry as an unknown field and, in about one process in six,
    # re-encodes it with the nested entries in another order, even with deterministic=True. What the gateway reads
    # (the known fields) is the same, which is what the harness checks now (it compared bytes).
    raw = (
        b"\ni\x08\r\x12e\n/J\x05extra\x12&*$\n\x12\n\x01o\x12\r2\x0b\n\t\x11\x00\x00\x00\x00\x00\x00\xf0?"
        b"\n\x0e\n\x06region\x12\x04\x1a\x02eu\n\x10\n\x03key\x12\t\x1a\x07sk-tdst\n \n\x08base_prl\x12\x14\x1a"
        b"\x12hse_uxr\x12sk-te}t\n \n\x08ba;e_url\x12\x14\x1a\x12http://12 .0athe.r 0"
    )
    request = decode_chat_request(raw)
    assert request.credential.id == 13 and set(request.credential.value.fields) == {"key", "base_prl"}
    check_one_input(raw)
