"""The `replicate` provider: language models hosted on Replicate, through the official `replicate` SDK.

Credential: ``key`` (an API token) and optionally ``base_url``. ``model.name`` is ``owner/name`` (the model's
latest version) or ``owner/name:version``. Replicate's language models take a ``prompt`` and a
``system_prompt``, not messages: system messages become the system prompt; a single user turn is the prompt as
is, and a longer conversation is rendered as a ``User:``/``Assistant:`` transcript ending with an
``Assistant:`` cue. Tools do not exist there, so tool definitions and tool turns are InvalidArgument.

A chat creates a prediction with ``stream: true`` and reads the server-sent events of its ``urls.stream``
(``output`` text pieces, ``error``, ``done``); usage comes from the finished prediction's metrics. The stream URL
is chosen by the server and the SDK's HTTP client sends the API token to it, so it must be on the base URL's
origin, on the server's allowlist, or (with the default base URL) on Replicate's own domains. When the stream is
abandoned (cancellation, a broken stream) the prediction is cancelled too, so it stops running and billing.
VerifyCredential reads ``GET /v1/account``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from replicate.__about__ import __version__ as sdk_version
from replicate.client import Client
from replicate.exceptions import ReplicateError, ReplicateException
from replicate.prediction import Prediction

from integration_api.errors import (
    Cancelled,
    DeadlineExceeded,
    GatewayError,
    Internal,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    from_http_status,
)
from integration_api.settings import Settings
from providers._http import Scrubber, retry_after, scrubbed
from providers._sse import ServerSentEvent, aiter_events
from providers.base import CHAT_RPCS, ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.parameters import ParameterReader
from providers.types import (
    AssistantMessage,
    ChatCall,
    ChatFinished,
    ChatMessage,
    SystemMessage,
    TextDelta,
    ToolMessage,
    Usage,
    UserMessage,
)

NAME = "replicate"
DEFAULT_BASE_URL = "https://api.replicate.com"
# Hosts Replicate serves prediction streams from (stream.replicate.com, streaming.api.replicate.com, ...).
VENDOR_STREAM_DOMAINS = ("replicate.com", "replicate.net", "replicate.delivery")
USAGE_LOOKUP_TIMEOUT_S = 5.0
_MODEL_REF = re.compile(r"(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[A-Za-z0-9][\w.-]*)(?::(?P<version>\w+))?", re.ASCII)
_NUMBERS = {
    "model.temperature": "temperature",
    "model.top_p": "top_p",
    "model.presence_penalty": "presence_penalty",
    "model.frequency_penalty": "frequency_penalty",
}
_INTEGERS = {"model.top_k": "top_k", "model.seed": "seed"}
_LABELS = {"user": "User", "assistant": "Assistant"}
# Failures of SDK and HTTP calls; ValueError/TypeError/KeyError are what the SDK's models raise on bodies that do
# not match the API.
_CALL_ERRORS = (ReplicateException, httpx.HTTPError, ValueError, TypeError, KeyError)

logger = logging.getLogger(__name__)


class _StatusError(ReplicateError):
    """The SDK's ReplicateError for an HTTP error answer, plus the answer's retry advice the SDK drops."""

    def __init__(self, response: httpx.Response) -> None:
        base = ReplicateError.from_response(response)
        super().__init__(base.type, base.title, base.status, base.detail, base.instance)
        self.retry_after = retry_after(response.headers)


class ReplicateClient(Client):
    """The SDK's client, over an HTTP client of ours: same headers, no retry layer, bounded timeouts.

    The SDK wraps every HTTP client it builds in a transport that retries GETs up to 10 times, and it creates
    predictions with ``timeout=None`` (no timeout at all); retries belong to the gateway's wrapper, and every call
    here keeps the connect and read timeouts of the settings. Cancels of abandoned predictions run in the
    background and are awaited when the client is closed.
    """

    def __init__(self, api_token: str, base_url: str, timeout: httpx.Timeout) -> None:
        super().__init__(api_token=api_token, base_url=base_url, timeout=timeout)
        headers = {"Authorization": f"Bearer {api_token}", "User-Agent": f"replicate-python/{sdk_version}"}
        # Explicitly no redirects: a base URL answering 307 to another host must not get the token.
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, follow_redirects=False)
        self._cancels: set[asyncio.Task[None]] = set()

    @property
    def _async_client(self) -> httpx.AsyncClient:
        return self.http

    async def _async_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if kwargs.get("timeout", 0) is None:
            del kwargs["timeout"]  # the SDK's "no timeout" for predictions.create: keep ours instead
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _StatusError(response)
        return response

    def cancel_soon(self, prediction_id: str) -> None:
        """Cancel a prediction in the background: closing a stream must not wait for the upstream."""
        task = asyncio.get_running_loop().create_task(self._cancel(prediction_id))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel(self, prediction_id: str) -> None:
        try:
            await self.predictions.async_cancel(prediction_id)
        except _CALL_ERRORS as exc:
            logger.warning("could not cancel replicate prediction %s (%s)", prediction_id, type(exc).__name__)

    async def aclose(self) -> None:
        if self._cancels:
            await asyncio.gather(*self._cancels, return_exceptions=True)
        await self.http.aclose()


@dataclass(frozen=True, slots=True)
class _ChatRequest:
    owner: str
    name: str
    version: str | None
    input: dict[str, Any]


@dataclass(slots=True)
class _StreamState:
    prediction_id: str
    outputs: int = 0
    ended: bool = False  # the prediction reached its end (done or error event): nothing is left to cancel


class ReplicateProvider(Provider):
    """Predictions of one Replicate account, streamed."""

    name = NAME

    def __init__(self, client: ReplicateClient, base_url: str, settings: Settings) -> None:
        self._client = client
        self._base_url = base_url
        self._settings = settings

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        request = chat_request(call)
        prediction = await self._create(request)
        state = _StreamState(prediction.id)
        try:
            url = self._stream_url(prediction)
            # A cold-booting model sends its first event late: the read timeout must not cut in before the wrapper's
            # time-to-first-token limit.
            base = self._client.http.timeout
            read = max(base.read or 0.0, self._settings.first_token_timeout_s)
            timeout = httpx.Timeout(base.write, connect=base.connect, read=read, pool=base.pool)
            async with self._client.http.stream("GET", url, headers=_SSE_HEADERS, timeout=timeout) as response:
                await _check_stream_response(response)
                async with contextlib.aclosing(aiter_events(response.aiter_bytes())) as events:
                    async for event in events:
                        if (text := _on_event(event, state)) is not None:
                            yield TextDelta(text)
                        if state.ended:
                            break
            if not state.ended:
                raise Unavailable(
                    "the replicate stream ended before its done event", provider_request_id=state.prediction_id
                )
        except _CALL_ERRORS as exc:
            raise self._error(exc, state.prediction_id) from exc
        finally:
            if not state.ended:
                self._client.cancel_soon(state.prediction_id)
        usage = await self._usage(state, request.input)
        yield ChatFinished("stop", usage, state.prediction_id)

    async def verify_credential(self) -> str:
        try:
            account = await self._client.accounts.async_current()
        except _CALL_ERRORS as exc:
            raise self._error(exc) from exc
        return f"{NAME} credential accepted (account {account.username})"

    async def _create(self, request: _ChatRequest) -> Prediction:
        try:
            if request.version:
                predictions = self._client.predictions
                return await predictions.async_create(version=request.version, input=request.input, stream=True)
            model = (request.owner, request.name)
            return await self._client.models.predictions.async_create(model=model, input=request.input, stream=True)
        except _CALL_ERRORS as exc:
            raise self._error(exc) from exc

    def _stream_url(self, prediction: Prediction) -> str:
        url = (prediction.urls or {}).get("stream")
        if not isinstance(url, str) or not url:
            raise InvalidArgument(
                f"the replicate model {prediction.model!r} does not stream its output",
                provider_request_id=prediction.id,
            )
        absolute = httpx.URL(self._base_url).join(url)
        if not self._stream_allowed(absolute):
            raise PermissionDenied(
                f"replicate answered with a stream URL on {absolute.scheme}://{absolute.host}, which is neither the "
                "base URL's origin nor allowed by this server",
                provider_request_id=prediction.id,
            )
        return str(absolute)

    def _stream_allowed(self, url: httpx.URL) -> bool:
        base = httpx.URL(self._base_url)
        if (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port):
            return True
        if self._settings.base_url_allowed(str(url)):
            return True
        vendor_host = any(url.host == domain or url.host.endswith(f".{domain}") for domain in VENDOR_STREAM_DOMAINS)
        return self._base_url == DEFAULT_BASE_URL and url.scheme == "https" and vendor_host

    async def _usage(self, state: _StreamState, model_input: dict[str, Any]) -> Usage:
        """Token counts from the finished prediction's metrics; estimates when they cannot be read."""
        estimated_input = sum(len(str(model_input.get(key, "")).split()) for key in ("prompt", "system_prompt"))
        metrics: dict[str, Any] = {}
        try:
            async with asyncio.timeout(min(USAGE_LOOKUP_TIMEOUT_S, self._settings.idle_timeout_s)):
                prediction = await self._client.predictions.async_get(state.prediction_id)
            metrics = prediction.metrics or {}
        except (*_CALL_ERRORS, TimeoutError):
            pass  # the reply is complete: failing it now for its token counts would be worse than estimating them
        return Usage(
            _count(metrics.get("input_token_count"), estimated_input),
            _count(metrics.get("output_token_count"), state.outputs),
        )

    def _error(self, exc: Exception, prediction_id: str | None = None) -> GatewayError:
        if isinstance(exc, ReplicateError) and exc.status is not None:
            message = f"{NAME} returned HTTP {exc.status}: {(exc.detail or exc.title or '')[:500]}"
            if exc.status == 402:  # spend limit or billing: no retry fixes it, the account owner must act
                return PermissionDenied(message, upstream_status=402, provider_request_id=prediction_id)
            retry_after = exc.retry_after if isinstance(exc, _StatusError) else None
            return from_http_status(exc.status, message, retry_after=retry_after, provider_request_id=prediction_id)
        if isinstance(exc, httpx.TimeoutException):
            return DeadlineExceeded(f"{NAME} did not answer in time", provider_request_id=prediction_id)
        if isinstance(exc, httpx.HTTPError):
            message = f"could not reach {NAME} or the connection broke ({type(exc).__name__})"
            return Unavailable(message, provider_request_id=prediction_id)
        if isinstance(exc, ValueError | TypeError | KeyError | ReplicateException):
            message = f"{NAME} sent a response that does not match its API ({type(exc).__name__})"
            return Unavailable(message, provider_request_id=prediction_id)
        return Internal(f"the {NAME} client failed: {type(exc).__name__}")


# --- request ------------------------------------------------------------------------------------------------------


def chat_request(call: ChatCall) -> _ChatRequest:
    """The prediction a ChatCall becomes; every problem is an InvalidArgument raised before any network call."""
    params = ParameterReader(call.parameters)
    owner, name, version = _model_ref(params.string("model.name"))
    model_input = _generation_input(params)
    params.reject_unused(NAME)
    if call.tools:
        raise InvalidArgument(f"provider {NAME!r} does not support tools (toolDefinitions)")
    prompt, system_prompt = _prompts(call.messages)
    model_input["prompt"] = prompt
    if system_prompt:
        model_input["system_prompt"] = system_prompt
    return _ChatRequest(owner, name, version, model_input)


def _model_ref(ref: str | None) -> tuple[str, str, str | None]:
    if not ref:
        raise InvalidArgument(f"provider {NAME!r} needs the model parameter 'model.name' (owner/name[:version])")
    match = _MODEL_REF.fullmatch(ref)
    if match is None:
        raise InvalidArgument(f"model.name must be 'owner/name' or 'owner/name:version', got {ref!r:.80}")
    return match["owner"], match["name"], match["version"]


def _generation_input(params: ParameterReader) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, field in _NUMBERS.items():
        if (number := params.number(key)) is not None:
            values[field] = number
    for key, field in _INTEGERS.items():
        if (integer := params.integer(key)) is not None:
            values[field] = integer
    completion_limit = params.integer("model.max_completion_tokens")
    limit = params.integer("model.max_tokens")
    if completion_limit is not None or limit is not None:
        values["max_tokens"] = completion_limit if completion_limit is not None else limit
    stop = params.string_list("model.stop")
    if stop:
        values["stop_sequences"] = ",".join(stop)  # Replicate's LLMs take them as one comma-separated string
    return values


def _prompts(messages: Sequence[ChatMessage]) -> tuple[str, str]:
    """(prompt, system prompt) of a conversation."""
    system = "\n\n".join(m.content for m in messages if isinstance(m, SystemMessage) and m.content)
    turns = [m for m in messages if not isinstance(m, SystemMessage)]
    for message in turns:
        if isinstance(message, ToolMessage) or (isinstance(message, AssistantMessage) and message.tool_calls):
            raise InvalidArgument(f"provider {NAME!r} does not support tools: the conversation has tool turns")
    if not turns or not isinstance(turns[-1], UserMessage):
        raise InvalidArgument(f"provider {NAME!r} needs a conversation that ends with a user message")
    if len(turns) == 1:
        return _text(turns[0]), system
    lines = [f"{_LABELS[m.role]}: {_text(m)}" for m in turns]
    return "\n".join([*lines, "Assistant:"]), system


def _text(message: ChatMessage) -> str:
    if isinstance(message, AssistantMessage):
        return message.text
    return message.content if isinstance(message, UserMessage | SystemMessage) else ""


# --- stream -------------------------------------------------------------------------------------------------------

_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}


async def _check_stream_response(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()
        raise _StatusError(response)
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if content_type != "text/event-stream":
        raise Unavailable(f"the replicate stream URL answered {content_type or 'no content type'}, not an event stream")


def _on_event(event: ServerSentEvent, state: _StreamState) -> str | None:
    """The text an event adds to the reply, if any; raises for the events that end it in an error.

    Replicate's ``:408`` keep-alive comments never get here (the decoder drops comments), and an ``output`` of
    several ``data:`` lines arrives as one text with its line breaks.
    """
    kind, data = event
    if kind == "output":
        if data:
            state.outputs += 1
            return data.decode("utf-8", "replace")
    elif kind == "error":
        state.ended = True  # the prediction failed: there is nothing left to cancel
        raise _stream_error(data, state.prediction_id)
    elif kind == "done":
        state.ended = True
        _check_done(data, state.prediction_id)
    return None  # logs and events this adapter does not know carry no reply text


def _stream_error(data: bytes, prediction_id: str) -> GatewayError:
    body = _json_object(data, prediction_id)
    detail = body.get("detail") or body.get("title") or "the prediction failed"
    message = f"{NAME} sent an error event: {detail!s:.500}"
    status = body.get("status")
    if isinstance(status, int) and 400 <= status <= 599:
        return from_http_status(status, message, provider_request_id=prediction_id)
    return Unavailable(message, provider_request_id=prediction_id)


def _check_done(data: bytes, prediction_id: str) -> None:
    reason = _json_object(data, prediction_id).get("reason")
    if not reason:
        return
    if reason == "canceled":
        raise Cancelled(f"the {NAME} prediction was canceled upstream", provider_request_id=prediction_id)
    raise Unavailable(f"the {NAME} prediction ended with reason {str(reason)!r:.40}", provider_request_id=prediction_id)


def _json_object(data: bytes, prediction_id: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise Unavailable(f"{NAME} sent a stream event that is not a JSON object", provider_request_id=prediction_id)
    return value


# --- helpers ------------------------------------------------------------------------------------------------------


def _count(value: Any, fallback: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else fallback


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "key")
    base_url = resolve_base_url(NAME, credential, env) or DEFAULT_BASE_URL

    def create() -> ReplicateClient:
        # The idle timeout bounds reads (and writes) as a backstop to the wrapper's own timers.
        timeout = httpx.Timeout(env.settings.idle_timeout_s, connect=env.settings.connect_timeout_s)
        return ReplicateClient(key, base_url, timeout)

    client = env.clients.get_or_create(credential_digest(NAME, credential, base_url), create)
    return scrubbed(ReplicateProvider(client, base_url, env.settings), Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, CHAT_RPCS, "language models hosted on Replicate (streamed predictions)")
