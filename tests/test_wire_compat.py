"""A client written only from docs/protocol.md's field numbers (no generated classes) can hold a stream.

This is what an existing Go client does on the wire: if these bytes work, their bytes work.
"""

from __future__ import annotations

import grpc

from tests.conftest import RunningGateway


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode())


def _parse(data: bytes) -> dict[int, list[int | bytes]]:
    """Decode one message level: field number -> values (varints as int, length-delimited as bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    position = 0

    def read_varint() -> int:
        nonlocal position
        result = shift = 0
        while True:
            byte = data[position]
            position += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while position < len(data):
        key = read_varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields.setdefault(number, []).append(read_varint())
        elif wire_type == 2:
            length = read_varint()
            fields.setdefault(number, []).append(data[position : position + length])
            position += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
    return fields


def _blob(value: int | bytes) -> bytes:
    """A length-delimited value (an embedded message, a string): a varint where one was expected fails the test."""
    assert isinstance(value, bytes), f"expected a length-delimited field, got the varint {value}"
    return value


def _old_client_request(request_id: str, text: str) -> bytes:
    """ChatRequest{credential(1){value(2) Struct{}}, requestId(3), conversations(4) Message{role(1), user(11){content(2)}},
    modelParameters(6) {"model.name" -> Any(google.protobuf.Value{string_value(3)})}, providerName(8)}."""
    user = _field(11, _text(2, text))
    message = _text(1, "user") + user
    value = _text(3, "sim-1")  # google.protobuf.Value.string_value = 3
    packed = _text(1, "type.googleapis.com/google.protobuf.Value") + _field(2, value)
    parameter_entry = _text(1, "model.name") + _field(2, packed)
    return (
        _field(1, _field(2, b""))
        + _text(3, request_id)
        + _field(4, message)
        + _field(6, parameter_entry)
        + _text(8, "simulated")
    )


async def test_a_client_built_from_field_numbers_holds_a_stream(gateway: RunningGateway) -> None:
    stream_chat = gateway.channel.stream_stream("/integration_api.UnifiedProviderService/StreamChat")
    call = stream_chat(metadata=gateway.metadata)
    for n in range(3):
        rid = f"wire-{n}"
        await call.write(_old_client_request(rid, f"raw bytes {n}"))
        text, final = "", None
        while final is None:
            frame = _parse(await call.read())
            assert frame[3] == [rid.encode()]  # requestId
            if 7 in frame:  # metrics: the end of the response
                final = frame
            else:
                assistant = _parse(_blob(_parse(_blob(frame[4][0]))[10][0]))  # data(4) -> assistant(10)
                text += b"".join(map(_blob, assistant[2])).decode()  # contents(2)
        assert text == f"raw bytes {n}"
        assert final[2] == [1] and final[1] == [200]  # success, code
        assert final[8] == [b"stop"]  # finishReason
        names = {_parse(_blob(metric))[1][0] for metric in final[7]}
        assert {b"INPUT_TOKEN", b"OUTPUT_TOKEN", b"TOTAL_TOKEN", b"TIME_TAKEN", b"FIRST_TOKEN_RECIEVED_TIME",
                b"LLM_REQUEST_ID", b"STATUS"} <= names  # fmt: skip
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
