"""`UsageLayer`: the outermost pipeline layer, recording one `UsageRecord` per request into the `UsageLog`.

Outermost, it sees every outcome of the layers inside it: a reply (tokens from ChatFinished, or from an embedding's
usage), a `GatewayError` raised through it (the provider's, the resilience layer's after its retries, a refusal by
the policy layer), a cancellation (CancelledError, or the consumer closing the stream early: status CANCELLED), and
unexpected exceptions (INTERNAL). It records, never changes, what passes through.

Cost, in US dollars, comes from a `Pricing` function: the policy's price table (``integration_api.policy.prices``,
`usd_pricing`), the one budgets are counted with; a model without a price costs 0. Message
content is recorded only with ``log_content`` (the last user message and the reply's text); never a credential:
the principal is recorded by its ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from integration_api.context import RequestContext
from integration_api.errors import GatewayError, Internal
from integration_api.policy.prices import NANO_USD, PriceTable
from integration_api.usage.log import UsageLog
from integration_api.usage.record import CANCELLED, OK, UsageRecord
from providers.base import ChatOutcome, ObservingLayer, Provider
from providers.types import (
    ChatCall,
    Usage,
    UserMessage,
)

T = TypeVar("T")
# The cost of `usage` tokens of (provider, model), in the price table's currency.
Pricing = Callable[[str, str, Usage], float]
CANCELLED_CODE = 499


def no_pricing(_provider: str, _model: str, _usage: Usage) -> float:
    return 0.0


def usd_pricing(table: PriceTable) -> Pricing:
    """Costs in US dollars from the policy's price table (which counts whole nano-dollars, for exact budgets)."""

    def cost(provider: str, model: str, usage: Usage) -> float:
        return table.cost_nano_usd(provider, model, usage) / NANO_USD

    return cost


class _Outcome:
    """What one request ended as: filled in while it runs, read when it is recorded."""

    __slots__ = ("code", "first_ns", "status", "usage")

    def __init__(self) -> None:
        self.status = CANCELLED  # until something else is known: an abandoned request was cancelled
        self.code = CANCELLED_CODE
        self.usage = Usage()
        self.first_ns = 0

    def succeeded(self) -> None:
        self.status, self.code = OK, 200

    def failed(self, error: BaseException) -> None:
        if isinstance(error, GatewayError):
            self.status, self.code = error.status, error.http_status
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.status, self.code = CANCELLED, CANCELLED_CODE
        else:
            self.status, self.code = Internal.status, Internal.http_status


class UsageLayer(ObservingLayer):
    def __init__(
        self,
        inner: Provider,
        context: RequestContext,
        log: UsageLog,
        *,
        pricing: Pricing = no_pricing,
        log_content: bool = False,
    ) -> None:
        super().__init__(inner, context)
        self._log = log
        self._pricing = pricing
        self._log_content = log_content
        self.keeps_text = log_content

    def closed(self, call: ChatCall, chat: ChatOutcome) -> None:
        outcome = _Outcome()
        outcome.first_ns = chat.first_ns
        if chat.usage is not None:
            outcome.usage = chat.usage
        if chat.error is not None:
            outcome.failed(chat.error)
        elif chat.finished:
            outcome.succeeded()
        else:  # the engine answers a stream without ChatFinished with INTERNAL
            outcome.status, outcome.code = Internal.status, Internal.http_status
        prompt = _last_user_message(call) if self._log_content else None
        reply = None if chat.texts is None else "".join(chat.texts)
        self._record(outcome, call.model, prompt, reply)

    async def unary(self, operation: Callable[[], Awaitable[T]], usage_of: Callable[[T], Usage] | None = None) -> T:
        outcome = _Outcome()
        try:
            result = await operation()
        except BaseException as error:
            outcome.failed(error)
            self._record(outcome)
            raise
        if usage_of is not None:
            outcome.usage = usage_of(result)
        outcome.succeeded()
        self._record(outcome)
        return result

    def _record(self, outcome: _Outcome, model: str = "", prompt: str | None = None, reply: str | None = None) -> None:
        context = self.context
        provider, model = context.provider, context.model or model
        if context.stats.served_by:  # a routing layer chose another provider/model
            provider, _, model = context.stats.served_by.partition("/")
        usage = outcome.usage
        cost = self._pricing(provider, model, usage) if usage.total_tokens else 0.0
        self._log.record(_usage_record(context, provider, model, outcome, cost, prompt, reply))


def _usage_record(
    context: RequestContext,
    provider: str,
    model: str,
    outcome: _Outcome,
    cost: float = 0.0,
    prompt: str | None = None,
    reply: str | None = None,
) -> UsageRecord:
    principal = context.principal
    return UsageRecord(
        time=context.started_at,
        request_id=context.request_id,
        stream_id=context.stream_id,
        organization_id=principal.organization_id,
        project_id=principal.project_id,
        key_id=principal.key_id,
        user_id=principal.user_id,
        auth_method=principal.method,
        rpc=context.rpc,
        provider=provider,
        model=model,
        status=outcome.status,
        code=outcome.code,
        input_tokens=outcome.usage.input_tokens,
        output_tokens=outcome.usage.output_tokens,
        cost=cost,
        ttft_ms=(outcome.first_ns - context.started_ns) / 1e6 if outcome.first_ns else None,
        total_ms=(time.perf_counter_ns() - context.started_ns) / 1e6,
        retries=max(context.stats.attempts - 1, 0),
        prompt=prompt,
        reply=reply,
    )


def attempt_recorder(log: UsageLog) -> Callable[[RequestContext, str, BaseException], None]:
    """Records one routed attempt that did not serve its request: a target that failed before its first event, or
    a hedge that lost the race (CANCELLED). The request's own record (the usage layer's) names the target that
    served it; these say what else was tried, so every attempt is in the usage log."""

    def record(context: RequestContext, target: str, error: BaseException) -> None:
        outcome = _Outcome()
        outcome.failed(error)
        provider, _, model = target.partition("/")
        log.record(_usage_record(context, provider, model, outcome))

    return record


def _last_user_message(call: ChatCall) -> str | None:
    for message in reversed(call.messages):
        if isinstance(message, UserMessage):
            return message.content
    return None
