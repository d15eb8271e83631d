"""Sessions as JSON bytes (orjson), the one format both stores keep them in."""

from __future__ import annotations

from typing import Any

import orjson

from integration_api.errors import Internal
from integration_api.sessions.store import Owner, Session
from providers.types import (
    AssistantMessage,
    ChatMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    UserMessage,
)

FORMAT = 1  # bumped if the layout below changes incompatibly


def message_to_json(message: ChatMessage) -> dict[str, Any]:
    if isinstance(message, UserMessage | SystemMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, AssistantMessage):
        calls = [[call.id, call.name, call.arguments, call.index] for call in message.tool_calls]
        return {"role": "assistant", "text": message.text, "tool_calls": calls}
    return {"role": "tool", "results": [[r.call_id, r.name, r.content] for r in message.results]}


def message_from_json(data: dict[str, Any]) -> ChatMessage:
    role = data["role"]
    if role == "user":
        return UserMessage(data["content"])
    if role == "system":
        return SystemMessage(data["content"])
    if role == "assistant":
        calls = tuple(ToolCall(call_id, name, args, index) for call_id, name, args, index in data["tool_calls"])
        return AssistantMessage(data["text"], calls)
    return ToolMessage(tuple(ToolResult(call_id, name, content) for call_id, name, content in data["results"]))


def encode(session: Session) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "id": session.id,
            "owner": [session.owner.organization_id, session.owner.project_id],
            "provider": session.provider,
            "system_prompt": session.system_prompt,
            "parameters": dict(session.parameters),
            "messages": [message_to_json(message) for message in session.messages],
            "created_at": session.created_at,
            "last_used_at": session.last_used_at,
            "revision": session.revision,
            "counters": [session.requests, session.input_tokens, session.output_tokens, session.trimmed],
        }
    )


def decode(raw: bytes | str) -> Session:
    """The session `encode` wrote; Internal when the stored bytes are not one (a corrupt or foreign record)."""
    try:
        data = orjson.loads(raw)
        requests, input_tokens, output_tokens, trimmed = data["counters"]
        return Session(
            id=data["id"],
            owner=Owner(*data["owner"]),
            provider=data["provider"],
            system_prompt=data["system_prompt"],
            parameters=data["parameters"],
            messages=tuple(message_from_json(message) for message in data["messages"]),
            created_at=data["created_at"],
            last_used_at=data["last_used_at"],
            revision=data["revision"],
            requests=requests,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            trimmed=trimmed,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise Internal(f"a stored session could not be read ({type(exc).__name__}: {exc})") from exc
