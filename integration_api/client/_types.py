"""The client's own typed values: conversation messages, tools, streamed events and results.

Plain frozen dataclasses, independent of protobuf. Wherever the client takes messages or tools it also takes
plain dicts in the familiar OpenAI shape (``{"role": "user", "content": "hi"}``); see ``_convert``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JsonValue: TypeAlias = Any  # what json.loads returns; kept loose on purpose at this boundary
ParameterValue: TypeAlias = str | int | float | bool | Sequence[Any] | Mapping[str, Any] | None

# --- conversation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of a tool requested by the model; `arguments` is JSON text (see `parsed_arguments`)."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> JsonValue:
        """The arguments decoded from JSON (an empty text decodes to ``{}``)."""
        return json.loads(self.arguments) if self.arguments.strip() else {}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The output of one tool call, sent back to the model in a `ToolMessage`."""

    tool_call_id: str
    content: str
    name: str = ""


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
    """What the model said: its text and the tools it asked to call."""

    content: str = ""
    tool_calls: Sequence[ToolCall] = ()
    role: Literal["assistant"] = "assistant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))


@dataclass(frozen=True, slots=True)
class ToolMessage:
    """The results of tool calls; one message may carry the results of several parallel calls."""

    results: Sequence[ToolResult]
    role: Literal["tool"] = "tool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", tuple(self.results))


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage
MessageParam: TypeAlias = Message | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is a JSON schema of type object."""

    name: str
    description: str = ""
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)


ToolParam: TypeAlias = Tool | Mapping[str, Any]

# --- streamed chat events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timings:
    """Server-side timings of one request, in milliseconds (`first_token_ms` is None when nothing was output)."""

    total_ms: float = 0.0
    first_token_ms: float | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text."""

    request_id: str
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: the first piece of call `index` has its id and name, `arguments` is a fragment."""

    request_id: str
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    type: Literal["tool_call_delta"] = "tool_call_delta"


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The end of a successful request: the whole message, why it stopped, what it cost and how long it took."""

    request_id: str
    message: AssistantMessage
    finish_reason: str
    usage: Usage = Usage()
    timings: Timings = Timings()
    provider_request_id: str = ""
    type: Literal["result"] = "result"

    @property
    def text(self) -> str:
        return self.message.content

    @property
    def tool_calls(self) -> Sequence[ToolCall]:
        return self.message.tool_calls


ChatEvent: TypeAlias = TextDelta | ToolCallDelta | ChatResult

# --- unary results --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Embedding:
    index: int
    vector: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """One embedding per input, in input order."""

    embeddings: tuple[Embedding, ...]
    usage: Usage = Usage()

    @property
    def vectors(self) -> list[tuple[float, ...]]:
        return [embedding.vector for embedding in self.embeddings]


@dataclass(frozen=True, slots=True)
class RerankedDocument:
    index: int
    document: str
    relevance_score: float


@dataclass(frozen=True, slots=True)
class RerankResult:
    """The documents, most relevant first."""

    results: tuple[RerankedDocument, ...]


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """Whether the provider accepted a credential; a rejected credential is an answer, not an exception."""

    valid: bool
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class ModerationResult:
    scores: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    rpcs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    server_version: str
    protocol_revision: int
    minimum_client_revision: int
    providers: tuple[ProviderInfo, ...] = ()
