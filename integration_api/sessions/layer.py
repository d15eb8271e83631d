"""`SessionLayer`: the pipeline layer that runs a request on a conversation kept by the server.

Only requests whose context names a session (``ChatRequest.sessionId``) get this layer; for one that does, it:

1. refuses a request that sends more than its new message(s) (a system or assistant message: INVALID_ARGUMENT);
2. holds the session for the request (requests on one session run one after the other; ``Sessions.turn``);
3. loads the session as its owner (missing, expired and another project's are one NOT_FOUND), and refuses it on
   another provider's service (FAILED_PRECONDITION);
4. sends the provider the system prompt, the history and the new message(s), with the session's model parameters
   under the request's own;
5. watches the events pass and, only when the stream ran to its end after ChatFinished, appends the new message(s)
   and the reply (text and tool calls) to the history. A failed, cancelled or abandoned request leaves the session
   as it was.
"""

from __future__ import annotations

import dataclasses

from integration_api.context import RequestContext
from integration_api.errors import FailedPrecondition
from integration_api.sessions.history import check_new_messages
from integration_api.sessions.manager import Sessions
from integration_api.sessions.store import Owner, Session
from providers.base import ChatStream, Provider, ProviderLayer
from providers.types import (
    AssistantMessage,
    ChatCall,
    ChatFinished,
    ChatMessage,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)


class _Reply:
    """The assistant message of one request, gathered from its events."""

    __slots__ = ("calls", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, *argument fragments]

    def add_call(self, delta: ToolCallDelta) -> None:
        parts = self.calls.get(delta.index)
        if parts is None:
            parts = self.calls[delta.index] = [delta.id, delta.name]
        parts[0] = parts[0] or delta.id
        parts[1] = parts[1] or delta.name
        parts.append(delta.arguments)

    def message(self) -> AssistantMessage:
        calls = tuple(
            ToolCall(parts[0], parts[1], "".join(parts[2:]), index) for index, parts in sorted(self.calls.items())
        )
        return AssistantMessage("".join(self.texts), calls)


def with_history(session: Session, call: ChatCall) -> ChatCall:
    """`call` as the provider gets it on `session`: system prompt, history, new messages; parameters merged."""
    system: tuple[ChatMessage, ...] = (SystemMessage(session.system_prompt),) if session.system_prompt else ()
    return dataclasses.replace(
        call,
        messages=(*system, *session.messages, *call.messages),
        parameters={**session.parameters, **call.parameters},
    )


class SessionLayer(ProviderLayer):
    def __init__(self, inner: Provider, context: RequestContext, sessions: Sessions) -> None:
        super().__init__(inner, context)
        self._sessions = sessions

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        context = self.context
        session_id = context.session_id
        check_new_messages(call.messages, session_id)
        owner = Owner.of(context.principal)
        async with self._sessions.turn(owner, session_id):
            session = await self._sessions.get(owner, session_id, for_turn=True)  # under the lock: after the last turn
            if session.provider != context.provider:
                raise FailedPrecondition(
                    f"session {session_id!r} runs on provider {session.provider!r}, not {context.provider!r}:"
                    f" send its requests to {session.provider!r} (UnifiedProviderService with providerName, or that"
                    " provider's own service)"
                )
            reply = _Reply()
            finished: ChatFinished | None = None
            async for event in self.inner.stream_chat(with_history(session, call)):
                if isinstance(event, TextDelta):
                    reply.texts.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    reply.add_call(event)
                else:
                    finished = event
                yield event
            # Reached only when the consumer asked for more after ChatFinished and the stream ended: success.
            if finished is not None:
                await self._sessions.commit(session, call.messages, reply.message(), finished.usage)
