"""`PolicyLayer`: the pipeline layer that asks `Policy` before every provider call and settles after it.

Every RPC that reaches a provider passes here (StreamChat requests, unary Chat, Embedding, Reranking,
VerifyCredential, GetModeration, the HTTP API): a refusal is raised before the inner layers run, so a stream gets
one error frame for that request and goes on, and a unary call gets its status (RESOURCE_EXHAUSTED with
RetryInfo). The lease is settled however the call ends: finished, failed, cancelled or abandoned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from integration_api.context import RequestContext
from integration_api.policy.policy import Estimate, Lease, Policy, estimate_tokens
from providers.base import ChatOutcome, ObservingLayer, Provider
from providers.types import (
    AssistantMessage,
    ChatCall,
    EmbeddingCall,
    EmbeddingResult,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
    SystemMessage,
    ToolMessage,
    Usage,
    UserMessage,
)

T = TypeVar("T")


def _characters(call: ChatCall) -> int:
    total = 0
    for message in call.messages:
        if isinstance(message, SystemMessage | UserMessage):
            total += len(message.content)
        elif isinstance(message, AssistantMessage):
            total += len(message.text) + sum(len(tc.name) + len(tc.arguments) for tc in message.tool_calls)
        elif isinstance(message, ToolMessage):
            total += sum(len(result.content) for result in message.results)
    return total


def chat_estimate(call: ChatCall, default_output: int) -> Estimate:
    """Characters / 4 of the messages, and ``model.max_completion_tokens`` / ``model.max_tokens`` or the default."""
    output = default_output
    for name in ("model.max_completion_tokens", "model.max_tokens"):
        value = call.parameters.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            output = int(value)
            break
    return Estimate(estimate_tokens(_characters(call)), output)


class PolicyLayer(ObservingLayer):
    def __init__(self, inner: Provider, context: RequestContext, policy: Policy) -> None:
        super().__init__(inner, context)
        self._policy = policy
        self._lease: Lease | None = None

    async def opened(self, call: ChatCall) -> None:
        policy = self._policy
        estimate = chat_estimate(call, policy.output_tokens_estimate)
        self._lease = await policy.admit(self.context.principal, self.context.provider, call.model, True, estimate)

    def closed(self, call: ChatCall, outcome: ChatOutcome) -> None:
        if self._lease is not None:
            self._lease.finish(outcome.usage, outcome.characters)

    async def _run(
        self,
        model: str,
        uses_model: bool,
        estimate: Estimate,
        operation: Callable[[], Awaitable[T]],
        usage_of: Callable[[T], Usage],
    ) -> T:
        lease = await self._policy.admit(self.context.principal, self.context.provider, model, uses_model, estimate)
        usage: Usage | None = None
        try:
            result = await operation()
            usage = usage_of(result)
            return result
        finally:
            lease.finish(usage)

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        estimate = Estimate(estimate_tokens(sum(len(text) for text in call.inputs.values())))

        def usage_of(result: EmbeddingResult) -> Usage:
            return result.usage if result.usage.total_tokens else Usage(estimate.input_tokens, 0)

        return await self._run(self.context.model, True, estimate, lambda: self.inner.embed(call), usage_of)

    async def rerank(self, call: RerankCall) -> RerankResult:
        characters = len(call.query) + sum(len(text) for text in call.documents.values())
        estimate = Estimate(estimate_tokens(characters))
        return await self._run(
            self.context.model, True, estimate, lambda: self.inner.rerank(call), lambda _: Usage(estimate.input_tokens)
        )

    async def verify_credential(self) -> str:
        return await self._run("", False, Estimate(0), self.inner.verify_credential, lambda _: Usage())

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        estimate = Estimate(estimate_tokens(len(call.content)))
        model = call.model or self.context.model
        return await self._run(
            model, True, estimate, lambda: self.inner.moderate(call), lambda _: Usage(estimate.input_tokens)
        )
