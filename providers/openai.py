"""The `openai` provider: OpenAI, and any OpenAI-compatible server, through the official `openai` SDK.

Credential: ``key`` (required) and optionally ``base_url``: a vLLM, Ollama, Groq, Together... server is this same
adapter with its URL there (honoured only when the server's allowlist permits it). Chat streams chat completions
with ``stream_options.include_usage``; Embedding, GetModeration and VerifyCredential (``models.list``) are the
matching endpoints. `OpenAIProvider` is also the `azure` adapter, over an ``AsyncAzureOpenAI`` client.

Clients use the SDK's aiohttp transport and one shared TLS context. The SDK builds each chat request (auth, URL,
typed errors), `_openai_transport` replays it for the next requests, and `_openai_wire` reads the streamed body
itself: see there why.
"""

from __future__ import annotations

import functools
from typing import Any

import openai
from openai import AsyncOpenAI, omit

from integration_api.errors import GatewayError, InvalidArgument, Unavailable
from integration_api.settings import Settings
from providers import _openai_wire as wire
from providers._http import Scrubber, scrubbed
from providers._openai_transport import ChatSender, UpstreamStream, tls_context
from providers.base import ALL_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.parameters import ParameterReader
from providers.types import (
    ChatCall,
    EmbeddingCall,
    EmbeddingResult,
    ModerationCall,
    ModerationResult,
)

NAME = "openai"
# Passed explicitly so the SDK never picks up OPENAI_BASE_URL from the server's environment.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
RPCS = ALL_RPCS - {"Reranking"}


def sdk_timeout(settings: Settings) -> openai.Timeout:
    """Connect timeout from the settings; the idle timeout bounds reads (and writes) as a backstop."""
    return openai.Timeout(settings.idle_timeout_s, connect=settings.connect_timeout_s)


def http_client(settings: Settings) -> openai.DefaultAioHttpClient:
    """The SDK's own aiohttp transport (less CPU per request and per read than its default httpx2 one).

    Redirects are not followed (the SDK's default follows them): an allowed base URL answering 307 to another
    host would otherwise send that host the caller's key. Vendors' APIs do not redirect.
    """
    return openai.DefaultAioHttpClient(timeout=sdk_timeout(settings), verify=tls_context(), follow_redirects=False)


class OpenAIProvider(Provider):
    """A chat-completions caller over one SDK client (an ``AsyncOpenAI`` or an ``AsyncAzureOpenAI``).

    Chat requests go out through the client's `ChatSender` (the SDK's request, then its replay); every other
    call is the SDK's own.
    """

    name = NAME

    def __init__(
        self,
        sender: ChatSender,
        *,
        name: str = NAME,
        chat_model: str | None = DEFAULT_CHAT_MODEL,
        embedding_model: str | None = DEFAULT_EMBEDDING_MODEL,
    ) -> None:
        self.name = name
        self._sender = sender
        self._client = sender.client
        self._chat_model = chat_model
        self._embedding_model = embedding_model

    def stream_chat(self, call: ChatCall) -> ChatStream:
        return wire.chat_events(functools.partial(self._open_chat, call), self._error)

    async def _open_chat(self, call: ChatCall) -> UpstreamStream:
        """Send the streamed request; the open answer's body is left to `wire.chat_events`.

        The body is built here from typed values, so ``chat.completions.create``'s per-request type walk over it
        (~0.2 ms for one message, ~7 ms for a 30-message conversation with tools) would change nothing.
        """
        params = ParameterReader(call.parameters)
        body: dict[str, Any] = {"model": self._model(params, self._chat_model)}
        body.update(wire.chat_options(params))
        params.reject_unused(self.name)
        body["messages"] = wire.chat_messages(call.messages)
        if call.tools:
            body["tools"] = wire.chat_tools(call.tools)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return await self._sender.open(body)

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        params = ParameterReader(call.parameters)
        model = self._model(params, self._embedding_model)
        dimensions = params.integer("model.dimensions")
        # base64 by default, as the SDK itself does: a quarter of the bytes of JSON floats.
        encoding_format = params.choice("model.encoding_format", wire.ENCODING_FORMATS) or "base64"
        user = params.string("model.user")
        params.reject_unused(self.name)
        keys = sorted(call.inputs)
        if not keys:
            raise InvalidArgument("the embedding request has no content")
        try:
            response = await self._client.embeddings.create(
                model=model,
                input=[call.inputs[key] for key in keys],
                encoding_format="float" if encoding_format == "float" else "base64",
                dimensions=omit if dimensions is None else dimensions,
                user=omit if user is None else user,
            )
        except wire.SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return wire.embedding_result(response, keys)

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        params = ParameterReader(call.parameters)
        parameter_model = params.string("model.name")
        model = call.model or parameter_model  # GetModeration's own `model` field wins
        params.reject_unused(self.name)
        try:
            if model:
                response = await self._client.moderations.create(input=call.content, model=model)
            else:
                response = await self._client.moderations.create(input=call.content)
        except wire.SDK_ERRORS as exc:
            raise self._error(exc) from exc
        if not response.results:
            raise Unavailable(f"{self.name} returned no moderation result")
        scores = response.results[0].category_scores.to_dict()  # keyed by the API's names, e.g. "hate/threatening"
        return ModerationResult({name: float(v) for name, v in scores.items() if isinstance(v, int | float)})

    async def verify_credential(self) -> str:
        try:
            page = await self._client.models.list()
        except wire.SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return f"{self.name} credential accepted ({len(page.data)} models visible)"

    def _model(self, params: ParameterReader, default: str | None) -> str:
        model = params.string("model.name") or default
        if not model:
            raise InvalidArgument(f"provider {self.name!r} needs the model parameter 'model.name'")
        return model

    def _error(self, exc: Exception) -> GatewayError:
        return wire.gateway_error(exc, self.name)


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    base_url = resolve_base_url(NAME, credential, env) or DEFAULT_BASE_URL

    def create() -> ChatSender:
        client = AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            max_retries=0,
            timeout=sdk_timeout(env.settings),
            http_client=http_client(env.settings),
        )
        return ChatSender(client, env.settings)

    sender = env.clients.get_or_create(credential_digest(NAME, credential, base_url), create)
    return scrubbed(OpenAIProvider(sender), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, RPCS, "OpenAI and OpenAI-compatible servers (chat completions)")
