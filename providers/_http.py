"""Small HTTP facts every adapter needs the same way: an upstream's retry advice, and keeping keys out of text.

Keys: an upstream may repeat what it received (the key, in a header, the query string or the body) in an error
body or an in-stream error event, and adapters quote such text in the errors they raise. `Scrubber` holds the
secret values of one credential and is the one place they are taken out of text. Each adapter's factory returns
its provider wrapped in `scrubbed(provider, Scrubber(...))`, so the message and human message of every
`GatewayError` leaving the adapter are scrubbed, whichever code raised it: no call site has to remember to.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote

import orjson

from integration_api.errors import GatewayError
from providers.base import Provider
from providers.types import (
    ChatCall,
    ChatEvent,
    EmbeddingCall,
    EmbeddingResult,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
)

REDACTED = "[redacted]"

# A secret, or where to read its current value (an access token the adapter's SDK obtained and refreshes).
Secret = str | Callable[[], str | None]
T = TypeVar("T")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The upstream's retry advice in seconds: `retry-after-ms` (Azure), else `retry-after` (seconds or a date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class Scrubber:
    """The secret values of one credential, and the one function that removes them from text.

    Each secret is also removed as it looks percent-encoded (an echoed query string) and JSON-escaped (an echoed
    body, where a PEM key's line breaks are ``\\n``).
    """

    __slots__ = ("_secrets",)

    def __init__(self, *secrets: Secret) -> None:
        self._secrets = secrets

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            value = secret if isinstance(secret, str) else secret()
            if value:
                for form in _forms(value):
                    text = text.replace(form, REDACTED)
        return text

    def error(self, error: GatewayError) -> None:
        """Scrub `error` in place: its message and human message, and its `args` (what ``str(error)`` shows)."""
        error.message = self(error.message)
        error.human_message = self(error.human_message)
        error.args = (error.message,)


def _forms(secret: str) -> list[str]:
    """The ways `secret` can appear in text, longest first (so no shorter form leaves a piece of a longer one)."""
    return sorted({secret, quote(secret, safe=""), orjson.dumps(secret).decode()[1:-1]}, key=len, reverse=True)


def scrubbed(provider: Provider, scrubber: Scrubber) -> Provider:
    """`provider`, every GatewayError it raises scrubbed of the credential's secrets (see the module doc)."""
    return _Scrubbed(provider, scrubber)


class _Scrubbed(Provider):
    """The wrapper of `scrubbed`: each call goes to `inner`; an error it raises is scrubbed on its way out.

    The error is the same exception object, re-raised: its type, traceback and cause are kept.
    """

    def __init__(self, inner: Provider, scrubber: Scrubber) -> None:
        self.inner = inner
        self.name = inner.name
        self._scrub = scrubber.error

    async def stream_chat(self, call: ChatCall) -> AsyncGenerator[ChatEvent, None]:
        events = self.inner.stream_chat(call)
        try:
            async for event in events:
                yield event
        except GatewayError as error:
            self._scrub(error)
            raise
        finally:
            await events.aclose()  # at once, also when the consumer stops early: that closes the upstream call

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        return await self._unary(self.inner.embed(call))

    async def rerank(self, call: RerankCall) -> RerankResult:
        return await self._unary(self.inner.rerank(call))

    async def verify_credential(self) -> str:
        return await self._unary(self.inner.verify_credential())

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        return await self._unary(self.inner.moderate(call))

    async def _unary(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except GatewayError as error:
            self._scrub(error)
            raise
