"""What a session turn adds to its history, and the trim policy that keeps the history bounded.

Tokens are approximated as characters / 4 (rounded up per message): no tokenizer per vendor, and the bound only
has to keep a conversation from growing without end. Trimming drops the oldest messages first; the system prompt
is kept apart, so it is never dropped; and a history never starts with an assistant or tool message (a tool
result without the call it answers is refused by most vendors), so those go with the turn they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence

from integration_api.errors import InvalidArgument
from providers.types import AssistantMessage, ChatMessage, ToolMessage, UserMessage

CHARS_PER_TOKEN = 4


def approximate_tokens(message: ChatMessage) -> int:
    if isinstance(message, AssistantMessage):
        chars = len(message.text) + sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
    elif isinstance(message, ToolMessage):
        chars = sum(len(result.content) for result in message.results)
    else:
        chars = len(message.content)
    return -(-chars // CHARS_PER_TOKEN)


def trim(messages: Sequence[ChatMessage], max_messages: int, max_tokens: int) -> tuple[tuple[ChatMessage, ...], int]:
    """`messages` without their oldest ones beyond the limits; returns (kept, how many were dropped)."""
    sizes = [approximate_tokens(message) for message in messages]
    total = sum(sizes)
    start = 0
    while start < len(messages) and (len(messages) - start > max_messages or total > max_tokens):
        total -= sizes[start]
        start += 1
    while start < len(messages) and not isinstance(messages[start], UserMessage):
        start += 1  # never begin with the reply or tool result of a turn whose question was dropped
    return tuple(messages[start:]), start


def check_new_messages(messages: Sequence[ChatMessage], session_id: str) -> None:
    """A request on a session sends only its new user or tool message(s): the session holds the rest."""
    for position, message in enumerate(messages):
        if not isinstance(message, UserMessage | ToolMessage):
            raise InvalidArgument(
                f"conversations[{position}] is a {message.role} message, but a request on session {session_id!r}"
                " sends only its new user or tool message(s): the server holds the history and the system prompt"
            )
