"""Validation of wire requests into the gateway's own types.

`parse_chat_request` turns a `ChatRequest` into a `ChatCall` or raises `InvalidArgument` with a message that
says exactly what is wrong (which message, which parameter). `decode_parameters` unpacks the
``map<string, Any>`` of model parameters, accepting `google.protobuf.Value` and every wrapper type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import DecodeError, Message

from integration_api.errors import InvalidArgument
from integration_api.proto import integration_api_pb2 as pb
from providers.types import (
    AssistantMessage,
    ChatCall,
    ChatMessage,
    JsonValue,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)

MAX_REQUEST_ID_LENGTH = 256
_ROLES = ("system", "user", "assistant", "tool")
_WRAPPERS: dict[str, type[Message]] = {
    wrapper.DESCRIPTOR.full_name: wrapper
    for wrapper in (
        wrappers_pb2.StringValue,
        wrappers_pb2.DoubleValue,
        wrappers_pb2.FloatValue,
        wrappers_pb2.Int64Value,
        wrappers_pb2.UInt64Value,
        wrappers_pb2.Int32Value,
        wrappers_pb2.UInt32Value,
        wrappers_pb2.BoolValue,
    )
}


def value_to_python(value: struct_pb2.Value) -> JsonValue:
    """A `google.protobuf.Value` as plain Python (None, bool, float, str, list, dict)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_python(value.struct_value)
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return None


def struct_to_python(struct: struct_pb2.Struct) -> dict[str, JsonValue]:
    return {key: value_to_python(item) for key, item in struct.fields.items()}


def _any_to_python(key: str, packed: any_pb2.Any) -> JsonValue:
    type_name = packed.TypeName()
    message_class: type[Message] | None = _WRAPPERS.get(type_name)
    converter: Callable[[Any], JsonValue] = lambda message: message.value  # noqa: E731
    if type_name == "google.protobuf.Value":
        message_class, converter = struct_pb2.Value, value_to_python
    elif type_name == "google.protobuf.Struct":
        message_class, converter = struct_pb2.Struct, struct_to_python
    elif type_name == "google.protobuf.ListValue":
        message_class = struct_pb2.ListValue
        converter = lambda message: [value_to_python(item) for item in message.values]  # noqa: E731
    if message_class is None:
        raise InvalidArgument(
            f"model parameter {key!r} packs unsupported type {packed.type_url!r}; "
            "use google.protobuf.Value or a wrapper type (StringValue, DoubleValue, Int64Value, BoolValue...)"
        )
    message = message_class()
    try:
        if not packed.Unpack(message):
            raise InvalidArgument(f"model parameter {key!r} could not be unpacked as {type_name}")
    except DecodeError as exc:
        raise InvalidArgument(f"model parameter {key!r} is not a valid {type_name}: {exc}") from exc
    return converter(message)


def decode_parameters(parameters: Mapping[str, any_pb2.Any]) -> dict[str, JsonValue]:
    """Decode a model-parameter map; every value must unpack, or the request is invalid."""
    return {key: _any_to_python(key, packed) for key, packed in parameters.items()}


def _parse_message(position: int, message: pb.Message) -> ChatMessage:
    kind = message.WhichOneof("message")
    if message.role and message.role not in _ROLES:
        raise InvalidArgument(f"conversations[{position}] has unknown role {message.role!r}; use one of {_ROLES}")
    if kind is None:
        raise InvalidArgument(f"conversations[{position}] has no content (set system, user, assistant or tool)")
    if message.role and message.role != kind:
        raise InvalidArgument(f"conversations[{position}] has role {message.role!r} but carries a {kind} message")
    if kind == "system":
        return SystemMessage(message.system.content)
    if kind == "user":
        return UserMessage(message.user.content)
    if kind == "assistant":
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments, call.index or index)
            for index, call in enumerate(message.assistant.toolCalls)
        )
        return AssistantMessage("".join(message.assistant.contents), calls)
    results = tuple(ToolResult(tool.id, tool.name, tool.content) for tool in message.tool.tools)
    if not results:
        raise InvalidArgument(f"conversations[{position}] is a tool message without any tool result")
    return ToolMessage(results)


def _parameter_schema(parameter: pb.FunctionParameter) -> dict[str, JsonValue]:
    schema: dict[str, JsonValue] = {"type": parameter.type or "object"}
    if parameter.properties:
        schema["properties"] = {name: _property_schema(prop) for name, prop in parameter.properties.items()}
    if parameter.required:
        schema["required"] = list(parameter.required)
    return schema


def _property_schema(prop: pb.FunctionParameterProperty) -> dict[str, JsonValue]:
    schema: dict[str, JsonValue] = {"type": prop.type or "string"}
    if prop.description:
        schema["description"] = prop.description
    if prop.enum:
        schema["enum"] = list(prop.enum)
    if prop.HasField("items"):
        schema["items"] = _parameter_schema(prop.items)
    return schema


def _parse_tool(position: int, tool: pb.ToolDefinition) -> ToolSpec:
    if tool.type not in ("", "function"):
        raise InvalidArgument(f"toolDefinitions[{position}] has unsupported type {tool.type!r}; only 'function'")
    if not tool.HasField("functionDefinition") or not tool.functionDefinition.name:
        raise InvalidArgument(f"toolDefinitions[{position}] needs a functionDefinition with a name")
    function = tool.functionDefinition
    return ToolSpec(function.name, function.description, _parameter_schema(function.parameters))


class UndecodableRequest(InvalidArgument):
    """A StreamChat message that is not a valid ChatRequest; `request_id` is its requestId when readable, or ""."""

    def __init__(self, message: str, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def decode_chat_request(raw: bytes) -> pb.ChatRequest:
    """Decode one StreamChat message, or raise `UndecodableRequest` (invalid UTF-8, nesting too deep, bad wire)."""
    try:
        return pb.ChatRequest.FromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        request_id = _peek_request_id(raw)
        raise UndecodableRequest(
            f"the ChatRequest message ({len(raw)} bytes) could not be decoded: {type(exc).__name__}: {exc}"[:500],
            request_id,
        ) from exc


_REQUEST_ID_FIELD = 3  # ChatRequest.requestId


def _peek_request_id(raw: bytes) -> str:
    """The requestId of an undecodable ChatRequest, read from the top-level wire fields; "" when unreadable.

    As in the decoder, the field's last occurrence wins (reading stops where the wire stops making sense) and the
    fields inside an unknown group are not top-level fields.
    """
    request_id = ""
    position = depth = 0
    try:
        while position < len(raw):
            tag, position = _read_varint(raw, position)
            field, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                _, position = _read_varint(raw, position)
            elif wire_type == 1:
                position += 8
            elif wire_type == 5:
                position += 4
            elif wire_type == 2:
                length, position = _read_varint(raw, position)
                if field == _REQUEST_ID_FIELD and depth == 0:
                    request_id = _peek_text(raw[position : position + length], length)
                position += length
            elif wire_type == 3:
                depth += 1
            elif wire_type == 4 and depth:
                depth -= 1
            else:
                break
    except IndexError:
        pass
    return request_id


def _peek_text(value: bytes, length: int) -> str:
    """A peeked requestId's text; "" when cut short, not UTF-8, or surely too long (no character takes 5 bytes)."""
    if len(value) != length or length > 4 * MAX_REQUEST_ID_LENGTH:
        return ""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return ""
    return text if len(text) <= MAX_REQUEST_ID_LENGTH else ""


def _read_varint(raw: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def parse_chat_request(request: pb.ChatRequest) -> ChatCall:
    """Validate a ChatRequest (START action) into a ChatCall, or raise InvalidArgument saying what is wrong."""
    if not request.requestId:
        raise InvalidArgument("requestId is required: every request on a stream needs its own id")
    if len(request.requestId) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(f"requestId is longer than {MAX_REQUEST_ID_LENGTH} characters")
    if not request.conversations:
        raise InvalidArgument("conversations is empty: send at least one message")
    messages = tuple(_parse_message(i, message) for i, message in enumerate(request.conversations))
    tools = tuple(_parse_tool(i, tool) for i, tool in enumerate(request.toolDefinitions))
    return ChatCall(
        request_id=request.requestId,
        messages=messages,
        parameters=decode_parameters(request.modelParameters),
        tools=tools,
        additional_data=dict(request.additionalData),
    )


def credential_value(credential: pb.Credential) -> dict[str, JsonValue]:
    """The request's credential as the gateway resolves it: its value, or, for a bare `Credential.id` (an empty
    value), ``{"credential_id": id}``, a reference to a stored credential (``integration_api.credentials``)."""
    value = struct_to_python(credential.value)
    if credential.id and not value:
        return {"credential_id": credential.id}
    return value
