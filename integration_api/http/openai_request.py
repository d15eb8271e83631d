"""OpenAI request bodies -> the gateway's own calls (`ChatCall`, `EmbeddingCall`), and the vendor credential.

Rules (README, "OpenAI-compatible HTTP API"):

- ``model`` is ``provider/model``: the provider is what comes before the first ``/``, ``model.name`` the rest
  (``openai/gpt-4o-mini``, ``replicate/meta/meta-llama-3-8b``); a bare ``provider`` leaves ``model.name`` unset
  (the provider's default model, where it has one). An unknown provider is 404 ``model_not_found``.
  ``route/NAME`` names the route NAME (provider ``route:NAME``; the route chooses each target's model).
- Messages: ``system`` and ``developer`` -> `SystemMessage`; ``user`` -> `UserMessage` (a string, or content parts
  of type ``text``, joined); ``assistant`` -> `AssistantMessage` with its ``tool_calls``; consecutive ``tool``
  messages -> one `ToolMessage`, each result named after the assistant tool call its ``tool_call_id`` answers.
  Other roles and non-text parts (images, audio, files) are 400: the protocol carries text only.
- ``tools`` of type ``function`` -> `ToolSpec` (``strict`` is not carried).
- Every other body field becomes the ``model.<field>`` parameter with its JSON value (temperature, top_p,
  max_tokens, max_completion_tokens, stop, seed, user, frequency_penalty, presence_penalty, tool_choice,
  response_format, reasoning_effort... and any field OpenAI does not define, which is how the SDKs' ``extra_body``
  reaches a provider: ``simulated_error`` -> ``model.simulated_error``). The adapter refuses what it does not
  support (400), as on gRPC. Not parameters: ``stream``, ``stream_options``, ``n`` (only 1), null values, and
  the flags that ask for nothing when off or at OpenAI's default (``logprobs: false``, ``store: false``,
  ``parallel_tool_calls: true``). A string ``stop`` is sent as a one-item list (``model.stop`` text is otherwise
  split at commas).
- Credential: ``X-Provider-Credential: <JSON object>`` and/or ``X-Provider-Key: K`` (-> ``{"key": K}``); neither
  is an empty credential (enough for ``simulated``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from integration_api.errors import InvalidArgument
from integration_api.http.openai_errors import ModelNotFound, OpenAIError
from providers.registry import ProviderRegistry
from providers.types import (
    AssistantMessage,
    ChatCall,
    ChatMessage,
    EmbeddingCall,
    JsonValue,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)

PROVIDER_KEY_HEADER = "x-provider-key"
PROVIDER_CREDENTIAL_HEADER = "x-provider-credential"
_NOT_PARAMETERS = frozenset({"model", "messages", "tools", "stream", "stream_options", "n"})
# Fields whose value here asks for nothing beyond OpenAI's default: not worth an adapter's refusal.
_DEFAULTS: dict[str, JsonValue] = {"logprobs": False, "store": False, "parallel_tool_calls": True}
_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True, slots=True)
class ChatCompletionRequest:
    provider: str
    model: str  # as the client wrote it, echoed in every response
    call: ChatCall
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    provider: str
    model: str
    call: EmbeddingCall
    base64: bool  # encoding_format "base64": what the Python SDK asks for unless told otherwise


def new_request_id() -> str:
    return secrets.token_hex(12)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(f"the request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise OpenAIError("the request body must be a JSON object", code="invalid_json")
    return value


def split_model(value: JsonValue, registry: ProviderRegistry) -> tuple[str, str]:
    """(provider, model name) of a ``provider/model`` string; 404 model_not_found for an unknown provider."""
    if not isinstance(value, str) or not value:
        raise OpenAIError("'model' is required: write provider/model, e.g. simulated/echo", param="model")
    provider, _, name = value.partition("/")
    if provider == "route":  # route/NAME is the configured route NAME (``integration_api.routing``)
        provider, name = f"route:{name}", ""
    if provider not in registry:
        enabled = ", ".join(spec.name for spec in registry)
        raise ModelNotFound(
            f"the model {value!r} names no enabled provider: write provider/model with provider one of {enabled}"
        )
    return provider, name


def parse_chat(body: Mapping[str, Any], registry: ProviderRegistry, request_id: str) -> ChatCompletionRequest:
    provider, name = split_model(body.get("model"), registry)
    n = body.get("n")
    if n not in (None, 1):
        raise OpenAIError("only n=1 is supported", param="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise OpenAIError("'stream' must be a boolean", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise OpenAIError("'stream_options' must be an object", param="stream_options")
    parameters = _parameters(body)
    if name:
        parameters["model.name"] = name
    call = ChatCall(request_id, _messages(body.get("messages")), parameters, _tools(body.get("tools")))
    return ChatCompletionRequest(provider, body["model"], call, stream, bool(options.get("include_usage")))


def parse_embeddings(body: Mapping[str, Any], registry: ProviderRegistry) -> EmbeddingsRequest:
    provider, name = split_model(body.get("model"), registry)
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
        raise OpenAIError("'input' must be a string or a non-empty list of strings (token arrays are not supported)")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise OpenAIError("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    parameters = {
        f"model.{key}": value
        for key, value in body.items()
        if key not in ("model", "input", "encoding_format") and value is not None
    }
    if name:
        parameters["model.name"] = name
    call = EmbeddingCall(dict(enumerate(inputs)), parameters)
    return EmbeddingsRequest(provider, body["model"], call, encoding == "base64")


def credential(headers: Mapping[str, str]) -> dict[str, JsonValue]:
    """The vendor credential of one request, from X-Provider-Credential and X-Provider-Key."""
    value: dict[str, JsonValue] = {}
    raw = headers.get(PROVIDER_CREDENTIAL_HEADER)
    if raw:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"X-Provider-Credential is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InvalidArgument('X-Provider-Credential must be a JSON object, e.g. {"key": ..., "endpoint": ...}')
        value.update(parsed)
    key = headers.get(PROVIDER_KEY_HEADER)
    if key:
        if "key" in value and value["key"] != key:
            raise InvalidArgument("X-Provider-Key and the key in X-Provider-Credential differ: send one")
        value["key"] = key
    return value


def _parameters(body: Mapping[str, Any]) -> dict[str, JsonValue]:
    parameters: dict[str, JsonValue] = {}
    for key, value in body.items():
        if key in _NOT_PARAMETERS or value is None or (key in _DEFAULTS and value == _DEFAULTS[key]):
            continue
        parameters[f"model.{key}"] = [value] if key == "stop" and isinstance(value, str) else value
    return parameters


def _text(content: JsonValue, where: str) -> str:
    """A message's content: a string, or content parts of type text (joined), or null."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise OpenAIError(f"{where}.content must be a string or a list of content parts", param=f"{where}.content")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise OpenAIError(
                f"{where}.content[{index}] is of type {kind!r}: only text content parts are supported",
                param=f"{where}.content",
            )
        texts.append(part["text"])
    return "".join(texts)


def _tool_calls(value: JsonValue, where: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OpenAIError(f"{where}.tool_calls must be a list", param=f"{where}.tool_calls")
    calls = []
    for index, item in enumerate(value):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise OpenAIError(f"{where}.tool_calls[{index}] needs a function with a name", param=f"{where}.tool_calls")
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append(ToolCall(str(item.get("id") or ""), function["name"], arguments, index))
    return tuple(calls)


def _messages(value: JsonValue) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise OpenAIError("'messages' must be a non-empty list", param="messages")
    messages: list[ChatMessage] = []
    tool_names: dict[str, str] = {}
    results: list[ToolResult] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise OpenAIError(f"{where} must be an object", param="messages")
        role = message.get("role")
        if role != "tool" and results:
            messages.append(ToolMessage(tuple(results)))
            results = []
        if role in _SYSTEM_ROLES:
            messages.append(SystemMessage(_text(message.get("content"), where)))
        elif role == "user":
            messages.append(UserMessage(_text(message.get("content"), where)))
        elif role == "assistant":
            calls = _tool_calls(message.get("tool_calls"), where)
            tool_names.update((call.id, call.name) for call in calls)
            messages.append(AssistantMessage(_text(message.get("content"), where), calls))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise OpenAIError(f"{where} is a tool message without tool_call_id", param="messages")
            results.append(ToolResult(call_id, tool_names.get(call_id, ""), _text(message.get("content"), where)))
        else:
            raise OpenAIError(
                f"{where} has unsupported role {role!r}: use system, developer, user, assistant or tool",
                param="messages",
            )
    if results:
        messages.append(ToolMessage(tuple(results)))
    return tuple(messages)


def _tools(value: JsonValue) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OpenAIError("'tools' must be a list", param="tools")
    tools = []
    for index, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise OpenAIError(f"tools[{index}] must be of type 'function' with a function object", param="tools")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise OpenAIError(f"tools[{index}].function needs a name", param="tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise OpenAIError(f"tools[{index}].function.parameters must be a JSON schema object", param="tools")
        tools.append(ToolSpec(name, str(function.get("description") or ""), parameters))
    return tuple(tools)
