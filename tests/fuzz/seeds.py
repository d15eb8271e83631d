"""Seed inputs for fuzzing StreamChat's request decoding: valid ChatRequests and hand-made wire corruptions.

The seeds are built here at run time (`write_corpus` puts them in a directory for libFuzzer), so nothing binary
is committed. `length_delimited` and `nested_struct` build wire bytes by hand because the protobuf runtime refuses
to build (or even copy) a message nested deeper than its decoder accepts, which is exactly what a hostile client
can send.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from integration_api.proto import integration_api_pb2 as pb

INVALID_UTF8 = 0xFF  # never valid anywhere in UTF-8


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def length_delimited(field: int, payload: bytes) -> bytes:
    """One wire-type-2 field: tag, length, payload."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def nested_struct(depth: int) -> bytes:
    """A serialized google.protobuf.Struct holding itself `depth` times: {"k": {"k": ... {}}}."""
    struct = b""
    for _ in range(depth):
        value = length_delimited(5, struct)  # Value.struct_value
        struct = length_delimited(1, length_delimited(1, b"k") + length_delimited(2, value))  # Struct.fields entry
    return struct


def deep_credential_request(request_id: str, depth: int) -> bytes:
    """A ChatRequest whose credential.value is a Struct nested `depth` deep (undecodable from about 33)."""
    credential = length_delimited(2, nested_struct(depth))  # Credential.value
    return length_delimited(3, request_id.encode()) + length_delimited(1, credential)


def corrupt_string(raw: bytes, text: str, index: int = 0) -> bytes:
    """`raw` with one byte of the (first) encoding of `text` replaced by an invalid UTF-8 byte; same length."""
    start = raw.find(text.encode())
    if start < 0 or not text:
        raise ValueError(f"{text!r} is not in the serialized message")
    position = start + index % len(text.encode())
    return raw[:position] + bytes([INVALID_UTF8]) + raw[position + 1 :]


def packed(message: Message) -> any_pb2.Any:
    value = any_pb2.Any()
    value.Pack(message)
    return value


def _tool() -> pb.ToolDefinition:
    items = pb.FunctionParameter(type="object", properties={"n": pb.FunctionParameterProperty(type="integer")})
    parameters = pb.FunctionParameter(
        type="object",
        required=["city"],
        properties={
            "city": pb.FunctionParameterProperty(type="string", description="where"),
            "unit": pb.FunctionParameterProperty(type="string", enum=["c", "f"]),
            "days": pb.FunctionParameterProperty(type="array", items=items),
        },
    )
    function = pb.FunctionDefinition(name="weather", description="the forecast", parameters=parameters)
    return pb.ToolDefinition(type="function", functionDefinition=function)


def _conversation() -> list[pb.Message]:
    call = pb.ToolCall(id="c1", type="function", function=pb.FunctionCall(name="weather", arguments='{"city":"x"}'))
    return [
        pb.Message(role="system", system=pb.SystemMessage(content="be brief")),
        pb.Message(role="user", user=pb.UserMessage(content="weather in Paris?")),
        pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=["let me see"], toolCalls=[call])),
        pb.Message(role="tool", tool=pb.ToolMessage(tools=[pb.ToolMessage.Tool(name="weather", id="c1", content="9")])),
    ]


def _every_parameter_kind() -> dict[str, any_pb2.Any]:
    nested = struct_pb2.Struct()
    nested.update({"type": "json_schema", "strict": True, "depth": [1, 2, {"x": None}]})
    stops = struct_pb2.ListValue()
    stops.extend(["\n", "END"])
    return {
        "model.name": packed(wrappers_pb2.StringValue(value="sim-1")),
        "model.temperature": packed(struct_pb2.Value(number_value=0.5)),
        "model.top_p": packed(wrappers_pb2.DoubleValue(value=0.9)),
        "model.top_k": packed(wrappers_pb2.Int32Value(value=40)),
        "model.seed": packed(wrappers_pb2.Int64Value(value=-7)),
        "model.max_tokens": packed(wrappers_pb2.UInt32Value(value=64)),
        "model.max_completion_tokens": packed(wrappers_pb2.UInt64Value(value=64)),
        "model.frequency_penalty": packed(wrappers_pb2.FloatValue(value=0.25)),
        "model.thinking": packed(wrappers_pb2.BoolValue(value=True)),
        "model.response_format": packed(nested),
        "model.stop": packed(stops),
        "model.user": packed(struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)),
    }


def seed_requests() -> list[pb.ChatRequest]:
    """Valid ChatRequests covering every field the validation path reads."""
    credential = struct_pb2.Struct()
    credential.update({"key": "sk-test", "base_url": "http://127.0.0.1:1", "extra": {"region": "eu", "n": [1.5]}})
    return [
        pb.ChatRequest(
            requestId="r1",
            providerName="simulated",
            conversations=[pb.Message(role="user", user=pb.UserMessage(content="hello"))],
        ),
        pb.ChatRequest(
            requestId="r2-tools",
            providerName="simulated",
            credential=pb.Credential(id=7, value=credential),
            conversations=_conversation(),
            toolDefinitions=[_tool()],
            modelParameters=_every_parameter_kind(),
            additionalData={"trace": "t-1", "ü": "ß"},
        ),
        pb.ChatRequest(requestId="r1", action=pb.REQUEST_ACTION_CANCEL),
        pb.ChatRequest(
            requestId="r3-bad-any",
            conversations=[pb.Message(user=pb.UserMessage(content="x"))],
            modelParameters={"model.name": any_pb2.Any(type_url="type.googleapis.com/nope.Nope", value=b"\x08\x01")},
        ),
    ]


def seed_messages() -> list[bytes]:
    """The seeds as raw StreamChat messages: the valid requests, then undecodable variants of them."""
    valid = [request.SerializeToString() for request in seed_requests()]
    return [
        *valid,
        corrupt_string(valid[0], "hello"),  # invalid UTF-8 in a message's content
        corrupt_string(valid[1], "r2-tools", 1),  # invalid UTF-8 in the requestId
        deep_credential_request("r4-deep", 200),
        valid[1][: len(valid[1]) // 2],  # truncated
    ]


def write_corpus(directory: Path) -> list[Path]:
    """Write every seed message to its own file in `directory` (named by content hash, as libFuzzer does)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for raw in seed_messages():
        path = directory / hashlib.sha1(raw).hexdigest()
        path.write_bytes(raw)
        paths.append(path)
    return paths
