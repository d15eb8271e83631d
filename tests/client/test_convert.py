"""Conversions at the client's edge: messages, tools, parameters, credentials, errors (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2

from integration_api.client import (
    APIConnectionError,
    AssistantMessage,
    BadRequestError,
    Credential,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    ToolResult,
    UserMessage,
)
from integration_api.client._convert import messages_proto, model_parameters, to_message, tools_proto
from integration_api.client._errors import error_class_for_code, error_class_for_status
from integration_api.client._results import message_from_proto


def test_dict_and_typed_messages_round_trip() -> None:
    params: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42", "name": "f"},
        AssistantMessage("done"),
    ]
    assert [message_from_proto(m) for m in messages_proto(params)] == [
        SystemMessage("be brief"),
        UserMessage("hi there"),
        AssistantMessage("", (ToolCall("c1", "f", '{"a": 1}'),)),
        ToolMessage((ToolResult("c1", "42", "f"),)),
        AssistantMessage("done"),
    ]


@pytest.mark.parametrize(
    ("messages", "error", "match"),
    [
        ([], ValueError, "empty"),
        ("hello", TypeError, "list of messages"),
        ([{"role": "wizard", "content": "x"}], ValueError, r"messages\[0\] has role 'wizard'"),
        ([{"role": "user"}], ValueError, "needs 'content'"),
        ([{"role": "tool", "content": "x"}], ValueError, "tool_call_id"),
        ([42], TypeError, "messages"),
        ([{"role": "assistant", "tool_calls": [{"id": "x"}]}], ValueError, "name"),
    ],
)
def test_bad_messages_are_refused_before_sending(messages: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        messages_proto(messages)


def test_tool_shapes_and_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "name"},
            "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
            "days": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        },
        "required": ["city"],
    }
    openai_shape = {"type": "function", "function": {"name": "w", "description": "d", "parameters": schema}}
    anthropic_shape = {"name": "w", "description": "d", "input_schema": schema}
    converted = tools_proto([Tool("w", "d", schema), openai_shape, anthropic_shape])
    assert converted[0] == converted[1] == converted[2]
    function = converted[0].functionDefinition
    assert function.parameters.required == ["city"] and function.parameters.properties["unit"].type == "string"
    assert list(function.parameters.properties["unit"].enum) == ["c", "f"]
    assert function.parameters.properties["days"].items.properties["n"].type == "integer"


def test_nested_object_properties_cannot_be_sent() -> None:
    nested = {"type": "object", "properties": {"address": {"type": "object", "properties": {"city": {}}}}}
    with pytest.raises(ValueError, match="nested object properties"):
        tools_proto([Tool("t", parameters=nested)])


def test_parameters_are_packed_values_under_the_model_prefix() -> None:
    packed = model_parameters("gpt", {"temperature": 0.2, "model.seed": 7, "stream": True, "stop": None, "x": [1]})
    assert set(packed) == {"model.name", "model.temperature", "model.seed", "model.stream", "model.x"}
    value = struct_pb2.Value()
    assert packed["model.temperature"].Unpack(value) and value.number_value == 0.2
    assert packed["model.stream"].Unpack(value) and value.bool_value
    with pytest.raises(ValueError, match="disagrees"):
        model_parameters("a", {"name": "b"})
    with pytest.raises(TypeError, match=r"'model\.when'"):
        model_parameters(None, {"when": object()})  # type: ignore[dict-item]


def test_credentials_never_show_secrets() -> None:
    azure = Credential.azure(subscription_key="secret-1", endpoint="https://x.openai.azure.com")
    vertex = Credential.vertex(project_id="p", service_account_key={"private_key": "secret-2"}, region="eu")
    assert azure.values == {"subscription_key": "secret-1", "endpoint": "https://x.openai.azure.com"}
    assert vertex.values["service_account_key"] == '{"private_key": "secret-2"}'
    for credential in (azure, vertex, Credential.openai(key="secret-3")):
        assert "secret" not in repr(credential)
    assert "endpoint='https://x.openai.azure.com'" in repr(azure)


def test_error_classes() -> None:
    assert error_class_for_status("RESOURCE_EXHAUSTED") is RateLimitError
    assert error_class_for_status("SOMETHING_NEW") is InternalServerError
    assert error_class_for_code(429) is RateLimitError and error_class_for_code(418) is BadRequestError
    assert error_class_for_code(502) is ServiceUnavailableError
    interrupted = StreamInterruptedError("broke", request_id="r")
    assert isinstance(interrupted, APIConnectionError) and interrupted.retryable and interrupted.code == 503
    copy = interrupted.copy(request_id="other")
    assert type(copy) is StreamInterruptedError and copy.request_id == "other" and "other" in str(copy)


def test_to_message_passes_typed_messages_through() -> None:
    message = UserMessage("x")
    assert to_message(message) is message
