"""The fuzzing harness of StreamChat's request path: one raw message through decoding and validation.

`check_one_input` does, for any bytes, what the engine does with one StreamChat message before a provider sees it
(`integration_api.engine.StreamSession.handle`, then `RequestRun`): decode, peek the requestId when that fails,
validate, decode the parameters and the credential, encode the error frame of a refusal. It raises only when an
invariant breaks:

- nothing but `InvalidArgument` escapes decoding or validation (any other exception is a crash of the stream's
  reader or of the request's task);
- `_peek_request_id` never raises and returns a str of at most MAX_REQUEST_ID_LENGTH characters, and it agrees
  with the decoder on every decodable message whose id is not too long;
- a decoded request re-serializes, and what it re-serializes to decodes to the same message;
- every refusal's error frame serializes (it is what the client gets instead).

`tests/fuzz/fuzz_requests.py` runs it under atheris (coverage-guided); `tests/fuzz/test_harness.py` runs it over the
seeds and random bytes in the ordinary suite.
"""

from __future__ import annotations

import json

from integration_api.errors import InvalidArgument
from integration_api.frames import error_frame
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import (
    MAX_REQUEST_ID_LENGTH,
    UndecodableRequest,
    _peek_request_id,
    credential_value,
    decode_chat_request,
    decode_parameters,
    parse_chat_request,
)


class InvariantBroken(AssertionError):
    """The request path did something it must never do with this input (not stripped by ``python -O``)."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise InvariantBroken(what)


def _check_refusal(request_id: str, error: InvalidArgument) -> None:
    frame = error_frame(request_id, error)
    _require(bool(frame.SerializeToString()) and frame.code == 400, "a refusal's error frame must serialize")


def _check_peek(data: bytes) -> str:
    peeked = _peek_request_id(data)  # any exception here is a crash: it runs in the stream's reader
    _require(isinstance(peeked, str), f"_peek_request_id returned {type(peeked).__name__}")
    _require(len(peeked) <= MAX_REQUEST_ID_LENGTH, f"_peek_request_id returned {len(peeked)} characters")
    return peeked


def _known_fields(request: pb.ChatRequest) -> pb.ChatRequest:
    known = pb.ChatRequest()
    known.CopyFrom(request)
    known.DiscardUnknownFields()
    return known


def _check_round_trip(request: pb.ChatRequest) -> None:
    # What the gateway reads is compared, not the bytes: protobuf (upb) keeps a map entry that carries an unknown
    # field as an unknown field of the map's message and may re-encode it with its nested map in another order,
    # even with deterministic=True, depending on the process's memory layout (tests/test_requests.py keeps the
    # input the fuzzer found). Unknown fields are never read.
    again = pb.ChatRequest.FromString(request.SerializeToString(deterministic=True))
    _require(
        _known_fields(again) == _known_fields(request),
        "a decoded request must re-serialize to a message that decodes to itself",
    )


def check_one_input(data: bytes) -> None:
    """Run `data` through the request path as the engine would; raise if an invariant breaks."""
    peeked = _check_peek(data)
    try:
        request = decode_chat_request(data)
    except UndecodableRequest as error:
        _require(error.request_id == peeked, "an undecodable request must carry the peeked requestId")
        _check_refusal(error.request_id, error)
        return
    if len(request.requestId) <= MAX_REQUEST_ID_LENGTH:
        _require(peeked == request.requestId, f"peeked {peeked!r} but the decoder read {request.requestId!r}")
    _check_round_trip(request)
    try:
        call = parse_chat_request(request)
        _require(call.request_id == request.requestId and isinstance(call.model, str), "the call keeps the request")
    except InvalidArgument as error:
        _check_refusal(request.requestId, error)
    try:
        json.dumps(decode_parameters(request.modelParameters))
    except InvalidArgument as error:
        _check_refusal(request.requestId, error)
    json.dumps(credential_value(request.credential))  # a Struct always converts: no InvalidArgument here
