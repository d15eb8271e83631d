"""From the client's Python values to the protocol's request messages.

Messages and tools may be the client's typed objects or plain dicts in the OpenAI shape; model parameters are
plain Python values packed as ``google.protobuf.Value`` under ``model.<name>``. Anything that cannot be sent
raises `TypeError` / `ValueError` naming the offending item, before a byte leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import any_pb2, json_format, struct_pb2

from integration_api.client._credentials import Credential
from integration_api.client._types import (
    AssistantMessage,
    Message,
    MessageParam,
    ParameterValue,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    ToolParam,
    ToolResult,
    UserMessage,
)
from integration_api.proto import integration_api_pb2 as pb

MODEL_PREFIX = "model."

# --- messages -------------------------------------------------------------------------------------------------


def to_message(param: MessageParam, where: str = "message") -> Message:
    """A typed message from a typed message or an OpenAI-shaped dict."""
    if isinstance(param, SystemMessage | UserMessage | AssistantMessage | ToolMessage):
        return param
    if not isinstance(param, Mapping):
        raise TypeError(f"{where} must be a message object or a dict with a 'role', not {type(param).__name__}")
    role = param.get("role")
    if role == "system":
        return SystemMessage(_text(param.get("content"), where))
    if role == "user":
        return UserMessage(_text(param.get("content"), where))
    if role == "assistant":
        raw_calls = param.get("tool_calls") or ()
        calls = tuple(_tool_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(raw_calls))
        return AssistantMessage(_text(param.get("content"), where, optional=True), calls)
    if role == "tool":
        return ToolMessage(_tool_results(param, where))
    raise ValueError(f"{where} has role {role!r}; use 'system', 'user', 'assistant' or 'tool'")


def _text(content: Any, where: str, *, optional: bool = False) -> str:
    """Message content: a string, or a list of OpenAI text parts (``{"type": "text", "text": ...}``)."""
    if content is None and optional:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        return "".join(str(part.get("text", "")) for part in content)
    raise ValueError(f"{where} needs 'content' as a string (or a list of text parts), got {content!r:.60}")


def _arguments(value: Any) -> str:
    if value is None:
        return "{}"
    return value if isinstance(value, str) else json.dumps(value)


def _tool_call(call: ToolCall | Mapping[str, Any], where: str) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    if not isinstance(call, Mapping):
        raise TypeError(f"{where} must be a ToolCall or a dict, not {type(call).__name__}")
    function = call.get("function")
    source = function if isinstance(function, Mapping) else call
    if not source.get("name"):
        raise ValueError(f"{where} needs a 'name' (or 'function': {{'name': ...}})")
    return ToolCall(str(call.get("id", "")), str(source["name"]), _arguments(source.get("arguments")))


def _tool_results(param: Mapping[str, Any], where: str) -> tuple[ToolResult, ...]:
    if "results" in param:
        results = tuple(param["results"])
        if not all(isinstance(result, ToolResult) for result in results):
            raise TypeError(f"{where}: 'results' must hold ToolResult objects")
        return results
    call_id = param.get("tool_call_id")
    if not call_id:
        raise ValueError(f"{where} is a tool message without 'tool_call_id'")
    return (ToolResult(str(call_id), _text(param.get("content"), where), str(param.get("name", ""))),)


def message_proto(message: Message) -> pb.Message:
    if isinstance(message, SystemMessage):
        return pb.Message(role="system", system=pb.SystemMessage(content=message.content))
    if isinstance(message, UserMessage):
        return pb.Message(role="user", user=pb.UserMessage(content=message.content))
    if isinstance(message, AssistantMessage):
        calls = [
            pb.ToolCall(id=c.id, type="function", function=pb.FunctionCall(name=c.name, arguments=c.arguments), index=i)
            for i, c in enumerate(message.tool_calls)
        ]
        contents = [message.content] if message.content else []
        return pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=contents, toolCalls=calls))
    tools = [pb.ToolMessage.Tool(name=r.name, id=r.tool_call_id, content=r.content) for r in message.results]
    return pb.Message(role="tool", tool=pb.ToolMessage(tools=tools))


def messages_proto(messages: Iterable[MessageParam]) -> list[pb.Message]:
    if isinstance(messages, str | Mapping):
        raise TypeError("messages must be a list of messages, e.g. [{'role': 'user', 'content': 'hi'}]")
    converted = [message_proto(to_message(message, f"messages[{i}]")) for i, message in enumerate(messages)]
    if not converted:
        raise ValueError("messages is empty: send at least one message")
    return converted


# --- tools ----------------------------------------------------------------------------------------------------


def to_tool(param: ToolParam, where: str = "tool") -> Tool:
    """A `Tool` from a Tool or a dict: ``{name, description, parameters}``, OpenAI's or Anthropic's shape."""
    if isinstance(param, Tool):
        return param
    if not isinstance(param, Mapping):
        raise TypeError(f"{where} must be a Tool or a dict, not {type(param).__name__}")
    spec = param["function"] if isinstance(param.get("function"), Mapping) else param
    if not spec.get("name"):
        raise ValueError(f"{where} needs a 'name'")
    schema = spec.get("parameters", spec.get("input_schema")) or {}
    return Tool(str(spec["name"]), str(spec.get("description", "")), schema)


def _parameter(schema: Any, where: str) -> pb.FunctionParameter:
    if not isinstance(schema, Mapping):
        raise TypeError(f"{where} must be a JSON schema object (a dict)")
    properties = schema.get("properties") or {}
    return pb.FunctionParameter(
        type=_schema_type(schema, "object"),
        required=[str(name) for name in schema.get("required") or ()],
        properties={str(name): _property(prop, f"{where}.{name}") for name, prop in properties.items()},
    )


def _property(schema: Any, where: str) -> pb.FunctionParameterProperty:
    if not isinstance(schema, Mapping):
        raise TypeError(f"{where} must be a JSON schema object (a dict)")
    if schema.get("properties"):
        raise ValueError(
            f"{where} is an object with its own properties: the protocol's tool definitions cannot carry nested "
            "object properties (only an array's 'items' may be an object); flatten the schema"
        )
    prop = pb.FunctionParameterProperty(
        type=_schema_type(schema, "string"),
        description=str(schema.get("description", "")),
        enum=[str(value) for value in schema.get("enum") or ()],
    )
    if isinstance(schema.get("items"), Mapping):
        prop.items.CopyFrom(_parameter(schema["items"], f"{where}[]"))
    return prop


def _schema_type(schema: Mapping[str, Any], default: str) -> str:
    kind = schema.get("type", default)
    if isinstance(kind, list):  # e.g. ["string", "null"]: the protocol has room for one type
        kind = next((k for k in kind if k != "null"), default)
    return str(kind)


def tool_proto(tool: Tool) -> pb.ToolDefinition:
    function = pb.FunctionDefinition(
        name=tool.name, description=tool.description, parameters=_parameter(tool.parameters, f"tool {tool.name!r}")
    )
    return pb.ToolDefinition(type="function", functionDefinition=function)


def tools_proto(tools: Iterable[ToolParam] | None) -> list[pb.ToolDefinition]:
    return [tool_proto(to_tool(tool, f"tools[{i}]")) for i, tool in enumerate(tools or ())]


# --- parameters and credentials -------------------------------------------------------------------------------


def packed_value(value: ParameterValue, name: str) -> any_pb2.Any:
    message = struct_pb2.Value()
    if isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, Mapping | Sequence):
        json_format.ParseDict(value, message)  # type: ignore[arg-type]  # a Value takes any JSON value
    else:
        raise TypeError(f"parameter {name!r} is a {type(value).__name__}; use str, int, float, bool, a list or a dict")
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def model_parameters(model: str | None, parameters: Mapping[str, ParameterValue] | None) -> dict[str, any_pb2.Any]:
    """``model.<name>`` parameters (keys given with or without the prefix; None values are left out)."""
    values: dict[str, ParameterValue] = {}
    for key, value in (parameters or {}).items():
        if value is not None:
            values[key if key.startswith(MODEL_PREFIX) else MODEL_PREFIX + key] = value
    if model:
        if values.get("model.name", model) != model:
            raise ValueError(f"model={model!r} disagrees with parameters['name']={values['model.name']!r}")
        values["model.name"] = model
    return {name: packed_value(value, name) for name, value in values.items()}


def credential_proto(credential: Credential | None) -> pb.Credential:
    if credential is None:
        return pb.Credential()
    if not isinstance(credential, Credential):
        raise TypeError(f"credential must be a Credential (e.g. Credential.openai(key=...)), not {type(credential)}")
    value = struct_pb2.Struct()
    value.update(dict(credential.values))
    return pb.Credential(id=credential.id, value=value)
