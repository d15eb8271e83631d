"""The `gemini` provider: the Gemini API (generativelanguage.googleapis.com), through the official `google-genai` SDK.

Credential: ``key`` (an API key, sent as ``x-goog-api-key``) and optionally ``base_url`` (honoured only when the
server's allowlist permits it). Chat streams ``streamGenerateContent``; Embedding is ``embedContent`` /
``batchEmbedContents``; VerifyCredential lists the models. `GeminiProvider` is also the `vertexai` adapter, over
a Vertex AI client: the request and response mapping is ``providers._genai_wire``; the SDK client (our HTTP
client, timeouts, no retries) and the mapping of the SDK's exceptions to `GatewayError`s (once, by exception
type, HTTP status and the ``google.rpc`` error details, never by message text) are here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from google import genai
from google.auth import credentials as google_credentials
from google.auth import exceptions as auth_errors
from google.genai import errors, types

from integration_api.errors import (
    DeadlineExceeded,
    GatewayError,
    Internal,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
    from_http_status,
)
from integration_api.settings import Settings
from providers import _genai_wire as wire
from providers._http import Scrubber, scrubbed
from providers.base import CHAT_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.parameters import ParameterReader
from providers.types import ChatCall, EmbeddingCall, EmbeddingResult

NAME = "gemini"
API_VERSION = "v1beta"  # the version Google's own docs and tools use; it has every field mapped here
DEFAULT_CHAT_MODEL = "gemini-2.5-flash"
DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
RPCS = CHAT_RPCS | {"Embedding"}

# What the SDK lets escape from a call: its HTTP errors (also raised for in-stream error events), the httpx errors
# of our transport, google-auth's token exchange errors (Vertex), and ValueErrors: request validation, and
# UnknownApiResponseError for a stream event that is not JSON.
SDK_ERRORS: tuple[type[Exception], ...] = (
    errors.APIError,
    httpx.HTTPError,
    httpx.StreamError,
    auth_errors.GoogleAuthError,
    ValueError,
)
# google.rpc.Code names, for error bodies whose numeric code is missing or not an HTTP status.
_STATUS_BY_NAME = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ABORTED": 409, "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}  # fmt: skip
# The Gemini API answers a bad key with 400 INVALID_ARGUMENT; its ErrorInfo reason says what it really is.
_UNAUTHENTICATED_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "ACCESS_TOKEN_EXPIRED"})


# --- the SDK client --------------------------------------------------------------------------------------------


@dataclass
class GenaiClient:
    """A cached ``genai.Client`` and the httpx client it sends through; closing closes both."""

    client: genai.Client
    http: httpx.AsyncClient
    # Vertex AI's: the SDK refreshes them in place, and the access token they hold is a secret like a key.
    credentials: google_credentials.Credentials | None = None

    def access_token(self) -> str | None:
        """The bearer token the SDK currently sends (Vertex AI), to be scrubbed from upstream text like a key."""
        return self.credentials.token if self.credentials is not None else None

    async def aclose(self) -> None:
        await self.client.aio.aclose()
        self.client.close()
        await self.http.aclose()


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The async HTTP client the SDK sends through: connect timeout, and the idle timeout between reads."""
    timeout = httpx.Timeout(settings.idle_timeout_s, connect=settings.connect_timeout_s)

    async def apply_timeout(request: httpx.Request) -> None:
        # The SDK passes its own per-request timeout: None (no timeout at all) unless HttpOptions.timeout is set,
        # and setting that also sends X-Server-Timeout, a deadline for the whole generation. Ours wins.
        request.extensions["timeout"] = timeout.as_dict()

    hooks: dict[str, list[Callable[..., Any]]] = {"request": [apply_timeout], "response": [wire.record_response]}
    # Explicitly no redirects (the SDK's own clients follow them): a base URL answering 307 elsewhere must fail.
    return httpx.AsyncClient(timeout=timeout, event_hooks=hooks, follow_redirects=False)


def http_options(base_url: str | None, api_version: str, http: httpx.AsyncClient) -> types.HttpOptions:
    """SDK options: our client (which also keeps the SDK off aiohttp, whose timeout is a total), no retries."""
    return types.HttpOptions(
        base_url=base_url,
        api_version=api_version,  # pinned, so GOOGLE_GENAI_API_VERSION in the environment cannot change it
        httpx_async_client=http,
        # One attempt: retries belong to the gateway's wrapper. Setting retry options also turns off the SDK's
        # implicit retry of connection errors.
        retry_options=types.HttpRetryOptions(attempts=1),
    )


# --- the provider ----------------------------------------------------------------------------------------------


class GeminiProvider(Provider):
    """A ``generateContent`` caller over one ``genai.Client`` (Gemini API or Vertex AI)."""

    name = NAME

    def __init__(
        self,
        client: GenaiClient,
        *,
        name: str = NAME,
        chat_model: str = DEFAULT_CHAT_MODEL,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    ) -> None:
        self.name = name
        self._client = client.client
        self._chat_model = chat_model
        self._embedding_model = embedding_model

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        params = ParameterReader(call.parameters)
        model = params.string("model.name") or self._chat_model
        config = wire.generate_config(params, has_tools=bool(call.tools))
        params.reject_unused(self.name)
        config.system_instruction, contents = wire.contents(call.messages)
        if call.tools:
            config.tools = list(wire.tools(call.tools))
        stream: AsyncIterator[types.GenerateContentResponse] | None = None
        opened: list[httpx.Response] = []
        try:
            stream = await self._client.aio.models.generate_content_stream(
                model=model, contents=list(contents), config=config
            )
            async for event in wire.chat_events(stream, opened):
                yield event
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc
        finally:
            # Also when the consumer stops early (aclose, cancellation): the upstream response is closed.
            await wire.close_stream(stream, opened)

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        params = ParameterReader(call.parameters)
        model = params.string("model.name") or self._embedding_model
        config = types.EmbedContentConfig(
            output_dimensionality=params.integer("model.dimensions"),
            task_type=params.string("model.task_type"),  # e.g. RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT
        )
        params.reject_unused(self.name)
        keys = sorted(call.inputs)
        if not keys:
            raise InvalidArgument("the embedding request has no content")
        # One Content per input: the SDK sends one embedding request per Content (a list of bare strings would
        # be merged into a single input by multimodal embedding models).
        contents = [types.Content(parts=[types.Part(text=call.inputs[key])]) for key in keys]
        try:
            response = await self._client.aio.models.embed_content(model=model, contents=list(contents), config=config)
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return wire.embedding_result(response, keys)

    async def verify_credential(self) -> str:
        try:
            pager = await self._client.aio.models.list()
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return f"{self.name} credential accepted ({len(pager.page)} models listed)"

    def _error(self, exc: Exception) -> GatewayError:
        return gateway_error(exc, self.name)


# --- errors ----------------------------------------------------------------------------------------------------


def gateway_error(exc: Exception, vendor: str) -> GatewayError:
    """The GatewayError for an exception the SDK raised; upstream text is quoted as is (`scrubbed` takes the
    credential's secrets out of it)."""
    if isinstance(exc, errors.APIError):
        return _api_error(exc, vendor)
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceeded(f"{vendor} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError | httpx.StreamError):
        return Unavailable(f"could not reach {vendor} or the connection broke ({type(exc).__name__})")
    if isinstance(exc, auth_errors.GoogleAuthError):
        return _auth_error(exc, vendor)
    if isinstance(exc, errors.UnknownApiResponseError | json.JSONDecodeError):
        return Unavailable(f"{vendor} sent a stream event that is not valid JSON")
    if isinstance(exc, ValueError):  # the SDK validates requests before sending them
        return InvalidArgument(f"the {vendor} request is not valid: {exc}")
    return Internal(f"the {vendor} client failed: {type(exc).__name__}")


def _api_error(exc: errors.APIError, vendor: str) -> GatewayError:
    body = _error_body(exc.details)
    status = _http_status(exc, body)
    name = f" {exc.status}" if exc.status else ""
    message = f"{vendor} returned HTTP {status}{name}: {exc.message or ''}"
    headers = getattr(exc.response, "headers", None)
    return from_http_status(status, message, retry_after=_retry_after(headers, body))


def _error_body(details: Any) -> dict[str, Any]:
    if isinstance(details, dict):
        inner = details.get("error")
        return inner if isinstance(inner, dict) else details
    return {}


def _http_status(exc: errors.APIError, body: Mapping[str, Any]) -> int:
    if any(_detail_reason(detail) in _UNAUTHENTICATED_REASONS for detail in _details(body)):
        return 401
    if isinstance(exc.code, int) and 400 <= exc.code <= 599:
        return exc.code
    return _STATUS_BY_NAME.get(str(exc.status), 500)


def _details(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = body.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _detail_reason(detail: Mapping[str, Any]) -> str:
    if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
        return str(detail.get("reason", ""))
    return ""


def _retry_after(headers: Mapping[str, str] | None, body: Mapping[str, Any]) -> float | None:
    """The retry-after header when present, else the google.rpc.RetryInfo detail (e.g. "retryDelay": "17s")."""
    candidates: list[object] = [headers.get("retry-after")] if headers else []
    candidates += [d.get("retryDelay") for d in _details(body) if str(d.get("@type", "")).endswith("RetryInfo")]
    for value in candidates:
        if isinstance(value, str) and value:
            try:
                return max(float(value.removesuffix("s")), 0.0)
            except ValueError:
                continue
    return None


def _auth_error(exc: auth_errors.GoogleAuthError, vendor: str) -> GatewayError:
    # google-auth's messages quote the token endpoint's answer, never the key: still, report only the type.
    if isinstance(exc, auth_errors.RefreshError) and not getattr(exc, "retryable", False):
        return Unauthenticated(f"{vendor} refused to exchange the service account key for a token")
    return Unavailable(f"could not get an access token for {vendor} ({type(exc).__name__})")


# --- factory ---------------------------------------------------------------------------------------------------


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    base_url = resolve_base_url(NAME, credential, env)

    def create() -> GenaiClient:
        http = http_client(env.settings)
        options = http_options(base_url, API_VERSION, http)
        # vertexai=False explicitly, so GOOGLE_GENAI_USE_VERTEXAI in the server's environment cannot flip it.
        return GenaiClient(genai.Client(vertexai=False, api_key=key, http_options=options), http)

    client = env.clients.get_or_create(credential_digest(NAME, credential, base_url), create)
    return scrubbed(GeminiProvider(client), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, RPCS, "Google Gemini API (generateContent) through google-genai")
