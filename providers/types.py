"""The gateway's own chat, embedding and reranking types: what providers take and give back.

These are plain frozen dataclasses, independent of protobuf and of every vendor SDK. The engine converts
wire messages into them (``integration_api.requests``) and events back into frames (``integration_api.frames``);
each adapter converts them to and from its vendor's types, which never leave the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JsonValue: TypeAlias = Any  # what json.loads can return; kept loose on purpose at this boundary

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


# --- conversation --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete call of a tool requested by the model (`arguments` is JSON text)."""

    id: str
    name: str
    arguments: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The output of one tool call, sent back to the model."""

    call_id: str
    name: str
    content: str


@dataclass(frozen=True, slots=True)
class SystemMessage:
    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True)
class UserMessage:
    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True)
class ToolMessage:
    results: tuple[ToolResult, ...]
    role: Literal["tool"] = "tool"


ChatMessage: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One chat request, as every provider receives it.

    `parameters` holds the request's decoded ``model.*`` parameters (see ``providers.parameters``).
    """

    request_id: str
    messages: tuple[ChatMessage, ...]
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()
    additional_data: Mapping[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        value = self.parameters.get("model.name")
        return value if isinstance(value, str) else ""


# --- streamed chat events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text, forwarded to the client as it arrives."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call. The first delta of a call carries its id and name; `arguments` is a fragment."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ChatFinished:
    """The last event of a successful chat: why it stopped and what it cost."""

    finish_reason: FinishReason
    usage: Usage
    provider_request_id: str = ""
    served_by: str = ""  # "provider/model" of the target a route chose (``integration_api.routing``), else ""


ChatEvent: TypeAlias = TextDelta | ToolCallDelta | ChatFinished


# --- unary calls -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    inputs: Mapping[int, str]
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingVector:
    index: int
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: tuple[EmbeddingVector, ...]
    usage: Usage = Usage()


@dataclass(frozen=True, slots=True)
class RerankCall:
    query: str
    documents: Mapping[int, str]
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RerankScore:
    index: int
    content: str
    relevance_score: float


@dataclass(frozen=True, slots=True)
class RerankResult:
    scores: tuple[RerankScore, ...]


@dataclass(frozen=True, slots=True)
class ModerationCall:
    content: str
    model: str = ""
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModerationResult:
    scores: Mapping[str, float]
