"""How the `openai` and `azure` adapters send a streamed chat request: the SDK's own request, then its replay.

The first chat request for a model goes through the SDK (``client.post``): the SDK builds the URL (Azure's
deployment path and api-version), the auth and its own headers, and sends it over its aiohttp transport. The
request it sent is kept as a `ChatRoute` (URL and headers), and the next requests for that model send the same
URL and headers, each with its own JSON body, straight over one aiohttp session of the adapter's. The SDK's
per-request work around the aiohttp call (options models, URL parsing, header merging, httpx2 request and
response objects) was most of what a streamed request cost the adapter: in-process, its CPU per 20-chunk
request went from ~870 to ~300 µs, and the gateway's in `make bench` scenario (c) from ~2,300 to ~1,450 µs.

Only clients whose auth is fixed when they are built replay (an API key, which is all the `openai` and `azure`
adapters use). The SDK stays the only sender of embeddings, moderations and model listings, and its exception
types stay the errors: a non-2xx answer to a replayed request becomes the `openai.APIStatusError` the SDK would
have raised, so `_openai_wire.gateway_error` maps both paths alike. A replay goes through the proxy the
environment names for its URL, as the SDK's requests do.
"""

from __future__ import annotations

import functools
import json
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx2
import openai
import orjson
from openai import AsyncOpenAI

from integration_api.settings import Settings

__all__ = ["ChatRoute", "ChatSender", "UpstreamStream", "tls_context"]

# Headers of the SDK's request that belong to one request or to httpx2, not to the route: aiohttp sets its own,
# and an idempotency key (which no SDK version used here sends for chat) must never be reused.
_NOT_REPLAYED = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection", "idempotency-key"}
)
# Routes are per model (Azure puts the deployment in the URL); a client used with more models than this keeps
# sending the rest through the SDK.
MAX_ROUTES = 64


class UpstreamStream(Protocol):
    """An upstream answer with a 2xx status whose body has not been read yet."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body, one network read at a time."""
        ...

    def sdk_response(self) -> httpx2.Response:
        """The answer as the SDK's exceptions want it (built on demand: only errors need it)."""
        ...

    async def aclose(self) -> None:
        """Release the connection: back to the pool when the body was read to its end, else closed."""
        ...


@dataclass(frozen=True, slots=True)
class ChatRoute:
    """Where the SDK sent a chat request, with which headers (auth included) and through which proxy."""

    url: str
    headers: tuple[tuple[str, str], ...]
    proxy: str | None = None

    @classmethod
    def of(cls, request: httpx2.Request) -> ChatRoute:
        headers = tuple((name, value) for name, value in request.headers.items() if name not in _NOT_REPLAYED)
        url = str(request.url)
        return cls(url, headers, environment_proxy(url))


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...), as the SDK's
    client honours it; looked up once per route rather than by aiohttp on every request (two thread hops)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


class ChatSender:
    """One credential's SDK client, the chat routes it has taken, and the session that replays them.

    It is what the client cache holds for the `openai` and `azure` adapters; `close` closes both the SDK client
    and the replay session.
    """

    def __init__(self, client: AsyncOpenAI, settings: Settings) -> None:
        self.client = client
        self._routes: dict[str, ChatRoute] = {}
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout_s, sock_read=settings.idle_timeout_s
        )

    async def open(self, body: dict[str, Any]) -> UpstreamStream:
        """Send a streamed chat request with `body`; a non-2xx answer raises the SDK's error for it."""
        route = self._routes.get(body["model"])
        if route is None:
            return await self._open_with_sdk(body)
        return await self._open_replayed(route, body)

    async def _open_with_sdk(self, body: dict[str, Any]) -> UpstreamStream:
        # ``client.post`` is the SDK's request path (URL, auth, Azure's deployment routing, timeouts, its typed
        # error for a non-2xx answer) minus ``chat.completions.create``'s type walk over a body we built.
        response: httpx2.Response = await self.client.post(
            "/chat/completions",
            cast_to=httpx2.Response,
            body=body,
            options={"security": {"bearer_auth": True}},
            stream=True,
        )
        if len(self._routes) < MAX_ROUTES:
            self._routes[body["model"]] = ChatRoute.of(response.request)
        return _SdkStream(response)

    async def _open_replayed(self, route: ChatRoute, body: dict[str, Any]) -> UpstreamStream:
        if self._session is None:
            self._session = _session()
        # aiohttp follows redirects unless told not to; a 3xx is an answer like any non-2xx (see openai.http_client).
        response = await self._session.post(
            route.url,
            data=_json(body),
            headers=route.headers,
            proxy=route.proxy,
            timeout=self._timeout,
            allow_redirects=False,
        )
        if response.status >= 300:
            try:
                content = await response.read()
            finally:
                response.release()
            raise _status_error(response, content, route.url)
        return _ReplayedStream(response, route.url)

    async def close(self) -> None:
        await self.client.close()
        if self._session is not None:
            await self._session.close()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context shared by every client and session, built on first use.

    Building one loads the CA bundle: ~20 ms of blocking CPU that would otherwise stall the event loop each
    time a new credential's client is created.
    """
    return httpx2.create_ssl_context()


def _json(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits (e.g. a seed of 1e20), which orjson refuses and the SDK sends
        return json.dumps(body).encode()


def _session() -> aiohttp.ClientSession:
    # No connection limit: each streamed chat holds a connection for its whole length, and a queue here would
    # be a stall that no timeout names.
    connector = aiohttp.TCPConnector(limit=0, ssl=tls_context())
    return aiohttp.ClientSession(connector=connector)


def _status_error(response: aiohttp.ClientResponse, content: bytes, url: str) -> openai.APIStatusError:
    """The SDK's error for a non-2xx answer, with the body unwrapped as the SDK unwraps it (its ``error``)."""
    body: object
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = content.decode("utf-8", "replace").strip() or None
    detail = body.get("error", body) if isinstance(body, dict) else body
    sdk_response = _sdk_response(response, url, content)
    return openai.APIStatusError(f"Error code: {response.status} - {body}", response=sdk_response, body=detail)


def _sdk_response(response: aiohttp.ClientResponse, url: str, content: bytes = b"") -> httpx2.Response:
    """An aiohttp answer as the httpx2 response the SDK's exception types carry."""
    request = httpx2.Request("POST", url)
    return httpx2.Response(response.status, headers=list(response.raw_headers), content=content, request=request)


class _SdkStream:
    """The answer to a request the SDK sent."""

    __slots__ = ("_response",)

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self._response.aiter_bytes():
            yield chunk

    def sdk_response(self) -> httpx2.Response:
        return self._response

    async def aclose(self) -> None:
        await self._response.aclose()


class _ReplayedStream:
    """The answer to a replayed request, read from aiohttp directly."""

    __slots__ = ("_response", "_url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        read = self._response.content.readany
        while chunk := await read():
            yield chunk

    def sdk_response(self) -> httpx2.Response:
        return _sdk_response(self._response, self._url)

    async def aclose(self) -> None:
        self._response.release()
