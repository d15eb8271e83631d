"""SSRF: a credential's base URL may reach only what the allowlist names, exactly, and never through a redirect.

The table drives `integration_api.url_policy` with every trick we know of (look-alike hosts, user info, other
spellings of an IP address, ports, path prefixes, escapes, control characters). The gateway tests then show,
through a real gateway and the real SDKs, that a refused URL is a PERMISSION_DENIED with no DNS lookup and no
connection, and that an allowed upstream answering 307 to a host off the list never gets that host called.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from integration_api.proto import integration_api_pb2 as pb
from integration_api.settings import Settings
from integration_api.testing.emulators.anthropic import AnthropicEmulator
from integration_api.testing.emulators.openai import OpenAIEmulator
from integration_api.testing.emulators.vertexai import VertexAIEmulator
from integration_api.url_policy import UrlRefused, compile_allowlist, parse_url
from tests.conftest import RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import chat_request, credential

VENDOR_KEY = "sk-ssrf-test-key-0123456789"

ALLOWLIST = (
    "http://127.0.0.1:*",
    "https://proxy.example/v1",
    "http://localhost",
    "http://[::1]:8080",
    "https://bücher.example",
)

ALLOWED = [
    "http://127.0.0.1:5000/v1",
    "http://127.0.0.1",  # ":*" includes the default port
    "http://127.0.0.1:80/",
    "http://127.0.0.1.:5000",  # one trailing dot of the host is dropped
    "https://proxy.example/v1",
    "https://proxy.example/v1/",
    "https://proxy.example/v1/chat/completions",
    "https://proxy.example:443/v1",  # the default port, explicit
    "HTTPS://PROXY.EXAMPLE/v1",  # scheme and host are case-insensitive
    "https://proxy.example./v1",
    "http://localhost",
    "http://localhost:80/anything",
    "http://[::1]:8080/v1",
    "http://[0:0:0:0:0:0:0:1]:8080",  # the same IPv6 address, another spelling: compared as addresses
    "https://bücher.example/v1",
    "https://xn--bcher-kva.example/v1",  # the same host, IDNA-encoded
]

REFUSED = [
    # look-alike hosts: the old string-prefix test let these through
    "http://127.0.0.1.evil.example",
    "http://127.0.0.1.evil.example:5000/v1",
    "http://127.0.0.10",
    "http://127.0.0.100:5000",
    "https://proxy.example.evil.example/v1",
    "https://proxy.examplE.evil/v1",
    "https://evilproxy.example/v1",
    # user info, before or around the host
    "http://127.0.0.1@evil.example/",
    "http://user:pw@127.0.0.1/",
    "http://user@127.0.0.1:5000/v1",
    "http://127.0.0.1:80@evil.example",
    "http://:@127.0.0.1",
    # other spellings of an IP address
    "http://127.1",
    "http://127.1:5000",
    "http://0x7f.0.0.1",
    "http://0x7f000001",
    "http://2130706433",
    "http://0177.0.0.1",
    "http://127.0.0.01",
    "http://127.0.0.1.1",
    "http://[::ffff:127.0.0.1]",
    "http://[::ffff:7f00:1]:5000",
    "http://[::127.0.0.1]",
    "http://１２７.０.０.１",  # full-width digits become 127.0.0.1 only after IDNA folding
    "http://127。0。0。1",  # ideographic full stops, likewise
    "http://[::1]",  # the allowed IPv6 address, but not its port
    "http://[::1]:8081",
    "http://[::1",
    "http://[127.0.0.1]",
    # percent-decoding tricks, in the host and the path
    "http://127%2e0.0.1",
    "http://%31%32%37.0.0.1",
    "http://127.0.0.1%2eevil.example",
    "https://proxy.example/v1/%2e%2e/admin",
    "https://proxy.example/v1%2f..%2fadmin",
    "http://[::1%25eth0]:8080",
    # ports
    "https://proxy.example:8443/v1",
    "http://localhost:8080",
    "http://localhost:443",
    "http://127.0.0.1:0",
    "http://127.0.0.1:65536",
    "http://127.0.0.1:099",
    "http://127.0.0.1:+80",
    "http://127.0.0.1:",
    "http://127.0.0.1:*",  # "any port" is for allowlist entries only
    "http://127.0.0.1:80:80",
    # schemes
    "http://proxy.example/v1",
    "https://localhost",
    "https://127.0.0.1:5000",
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:5000/_",
    "//127.0.0.1:5000/v1",
    "127.0.0.1:5000",
    "http:/127.0.0.1:5000",
    "http:127.0.0.1",
    "",
    # path prefixes on segment boundaries, and dot segments
    "https://proxy.example/v10",
    "https://proxy.example/v1beta",
    "https://proxy.example/",
    "https://proxy.example",
    "https://proxy.example/V1",
    "https://proxy.example/v1/../admin",
    "https://proxy.example/v1/..",
    "https://proxy.example/v1/./x",
    "https://proxy.example/v1/..;/admin",
    "https://proxy.example/x/../v1",
    # queries and fragments, even empty ones
    "http://127.0.0.1:5000/v1?x=1",
    "http://127.0.0.1:5000/v1?",
    "http://127.0.0.1:5000/v1#frag",
    "http://127.0.0.1:5000/v1#",
    "http://evil.example#@127.0.0.1",
    "http://evil.example?@127.0.0.1",
    # control characters, whitespace, backslashes, other text outside the host
    "http://127.0.0.1\\@evil.example",
    "http://127.0.0.1\\.evil.example",
    "http://127.0.0.1\t.evil.example",
    "http://127.0.0.1\n.evil.example",
    "http://127.0.0.1\r\nHost: evil.example",
    "http://127.0.0.1\x00.evil.example",
    "http://127.0.0.1\x7f",
    " http://127.0.0.1",
    "http://127.0.0.1 ",
    "http://127.0.0.1\u00a0.evil.example",
    "http://127.0.0.1\u3000",
    "http://127.0.0.1/v1/ünïcode",
    "http://127.0.0.1／evil.example",  # a full-width solidus folds to "/" inside the host
    "http://127.0.0.1＠evil.example",
    "http://evil.example：80",
    # hosts that are no host name
    "http:///v1",
    "http://./v1",
    "http://a..b",
    "http://-evil.example",
    "http://evil-.example",
    "http://" + "a" * 64 + ".example",
    "http://*.example",
    "http://local host",
]


@pytest.fixture(scope="module")
def allowlist() -> Any:
    return compile_allowlist(ALLOWLIST)


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed(allowlist: Any, url: str) -> None:
    assert allowlist.allows(url), url


@pytest.mark.parametrize("url", REFUSED)
def test_refused(allowlist: Any, url: str) -> None:
    assert not allowlist.allows(url), url
    with pytest.raises(UrlRefused):
        allowlist.check(url)


def test_an_allowed_url_is_used_in_its_canonical_spelling(allowlist: Any) -> None:
    assert allowlist.check("HTTPS://PROXY.example.:443/v1/").text == "https://proxy.example/v1/"
    assert allowlist.check("http://127.0.0.1:80").text == "http://127.0.0.1"
    assert allowlist.check("http://[0:0::1]:8080/v1").text == "http://[::1]:8080/v1"
    assert allowlist.check("https://bücher.example/v1").text == "https://xn--bcher-kva.example/v1"


def test_a_refusal_never_repeats_a_password() -> None:
    with pytest.raises(UrlRefused) as caught:
        parse_url("http://user:hunter2@127.0.0.1:5000/v1")
    assert "hunter2" not in str(caught.value) and "user info" in str(caught.value)


def test_an_entry_without_a_port_allows_only_the_default_port() -> None:
    allowlist = compile_allowlist(("http://127.0.0.1", "https://api.example"))
    assert allowlist.allows("http://127.0.0.1/v1") and allowlist.allows("http://127.0.0.1:80/v1")
    assert not allowlist.allows("http://127.0.0.1:5000/v1")
    assert allowlist.allows("https://api.example:443") and not allowlist.allows("https://api.example:444")


def test_an_entry_path_is_a_prefix_on_segment_boundaries() -> None:
    allowlist = compile_allowlist(("https://proxy.example/v1/",))  # its trailing slash changes nothing
    assert allowlist.allows("https://proxy.example/v1") and allowlist.allows("https://proxy.example/v1/x")
    assert not allowlist.allows("https://proxy.example/v10")


def test_an_empty_allowlist_allows_nothing() -> None:
    assert not Settings().base_url_allowed("http://127.0.0.1")


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1",
        "127.0.0.1:5000",
        "http://",
        "ftp://files.example",
        "http://127.1",
        "http://user@proxy.example",
        "http://proxy.example/v1?key=1",
        "http://proxy.example/v1#",
        "http://proxy.example:99999",
        "http://proxy.example:any",
        "http://*.example",
        "http://proxy.example/v1/../v2",
        "http://proxy.example/v1%2f",
    ],
)
def test_an_invalid_allowlist_entry_is_a_startup_error(entry: str) -> None:
    with pytest.raises(ValidationError, match="is not a valid base URL"):
        Settings(allowed_base_urls=(entry,))
    with pytest.raises(ValidationError, match="is not a valid base URL"):
        Settings(allowed_base_urls=f"https://fine.example, {entry}")  # type: ignore[arg-type]


def test_settings_accept_and_apply_valid_entries() -> None:
    settings = Settings(allowed_base_urls="http://127.0.0.1:*, https://proxy.example/v1")  # type: ignore[arg-type]
    assert settings.allowed_base_urls == ("http://127.0.0.1:*", "https://proxy.example/v1")
    assert settings.base_url_allowed("http://127.0.0.1:9000/v1")
    assert not settings.base_url_allowed("http://127.0.0.1.evil.example:9000/v1")


# --- through a real gateway ------------------------------------------------------------------------------------


class Recorder:
    """An HTTP server on 127.0.0.1 that answers 500 to anything and remembers that it was called."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _any(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, dict(request.headers)))
        return web.Response(status=500, text="the gateway must never get here")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = Recorder()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name resolved in this process other than 127.0.0.1's; ``*.evil.example`` resolves to 127.0.0.1.

    Nothing leaves the machine: a name that is not ours fails to resolve, and the look-alike names land on the
    recorder, so a gateway that let them through would be seen connecting and handing over the key.
    """
    real = socket.getaddrinfo
    seen: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in ("127.0.0.1", "localhost", None):
            return real(host, *args, **kwargs)
        seen.append(str(name))
        if str(name).endswith(".evil.example"):
            return real("127.0.0.1", *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "not resolved in tests")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


async def _chat(
    gateway: RunningGateway, provider: str, base_url: str, request_id: str = "r", **fields: str
) -> pb.ChatResponse:
    stream = gateway.open_stream()
    cred = credential(**(fields or {"key": VENDOR_KEY}), base_url=base_url)
    await stream.send(chat_request(request_id, provider=provider, cred=cred))
    collected = await stream.read_until_done([request_id])
    await stream.call.done_writing()
    return collected.terminal(request_id)


@pytest.mark.parametrize(
    "base_url",
    ["http://user:pw@127.0.0.1:{port}/v1", "http://127.0.0.1@evil.example:{port}/v1", "http://127.0.0.1:{port}@x/v1"],
)
async def test_user_info_is_permission_denied_not_internal(
    gateway: RunningGateway, recorder: Recorder, lookups: list[str], base_url: str
) -> None:
    final = await _chat(gateway, "openai", base_url.format(port=recorder.port))
    assert final.error.status == "PERMISSION_DENIED", final.error
    assert "pw@" not in final.error.errorMessage
    assert recorder.hits == [] and lookups == []


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "cohere", "gemini", "replicate"])
async def test_a_look_alike_host_is_refused_without_a_lookup_or_a_connection(
    gateway: RunningGateway, recorder: Recorder, lookups: list[str], provider: str
) -> None:
    final = await _chat(gateway, provider, f"http://127.0.0.1.evil.example:{recorder.port}/v1")
    assert final.error.status == "PERMISSION_DENIED", final.error
    assert lookups == []
    assert recorder.hits == []


class RedirectingOpenAI(OpenAIEmulator):
    """The OpenAI emulator, answering chat requests with a 307 to `redirect_to` once that is set."""

    redirect_to: str | None = None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            await self.record(request)
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        return await super().chat(request)


class RedirectingAnthropic(AnthropicEmulator):
    redirect_to: str | None = None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            await self.record(request)
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        return await super().messages(request)


async def _gateway_allowing_only(tmp_path: Path, origin: str) -> RunningGateway:
    return await start_gateway(make_settings(tmp_path, allowed_base_urls=(origin,)))


async def _stop(gateway: RunningGateway) -> None:
    await gateway.channel.close()
    await gateway.server.stop()


@pytest.mark.parametrize("path", ["sdk", "replay"])
async def test_openai_never_follows_a_redirect(tmp_path: Path, recorder: Recorder, path: str) -> None:
    """The first request for a model goes through the SDK; the next ones replay its URL over aiohttp."""
    emulator = RedirectingOpenAI()
    async with emulator:
        gateway = await _gateway_allowing_only(tmp_path, emulator.origin)
        try:
            if path == "replay":
                first = await _chat(gateway, "openai", emulator.base_url, "first")
                assert first.success, first.error
            emulator.redirect_to = f"http://127.0.0.1:{recorder.port}/v1/chat/completions"
            final = await _chat(gateway, "openai", emulator.base_url)
            assert not final.success
            assert len(emulator.requests) == (2 if path == "replay" else 1)
            assert recorder.hits == []
        finally:
            await _stop(gateway)


async def test_anthropic_never_follows_a_redirect(tmp_path: Path, recorder: Recorder) -> None:
    emulator = RedirectingAnthropic()
    async with emulator:
        gateway = await _gateway_allowing_only(tmp_path, emulator.origin)
        try:
            emulator.redirect_to = f"http://127.0.0.1:{recorder.port}/v1/messages"
            final = await _chat(gateway, "anthropic", emulator.base_url)
            assert not final.success
            assert emulator.requests  # (the adapter may retry the failed call; none of them may be followed)
            assert recorder.hits == []
        finally:
            await _stop(gateway)


class RedirectingVertexAI(VertexAIEmulator):
    """The Vertex AI emulator, answering the token exchange (the signed assertion) with a 307 to `redirect_to`."""

    redirect_to: str | None = None

    async def token(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            await self.record(request)
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        return await super().token(request)


async def test_vertexai_token_exchange_never_follows_a_redirect(tmp_path: Path, recorder: Recorder) -> None:
    emulator = RedirectingVertexAI()
    async with emulator:
        gateway = await _gateway_allowing_only(tmp_path, emulator.origin)
        try:
            emulator.redirect_to = f"http://127.0.0.1:{recorder.port}/token"
            fields = emulator.credential()
            final = await _chat(gateway, "vertexai", fields.pop("base_url"), **fields)
            assert not final.success
            assert [r for r in emulator.requests if r.path == "/token"]
            assert recorder.hits == []
        finally:
            await _stop(gateway)
