"""The web chat page in a real browser: Debian's chromium, headless, driven by Playwright (the Python package, whose
wheel bundles its driver; it never downloads a browser), against a real gateway on 127.0.0.1 port 0 (gRPC server
and the HTTP server with the page and the WebSocket bridge).

The page types a message and shows the simulated provider's streamed echo; a slow reply (200 ms per word) runs
while a quick one completes on the same socket; the slow one's Cancel really cancels (its cancelled error frame
shows "cancelled", its text is cut short, and the gateway's access log records the request as CANCELLED). The
screenshots are saved under tests/artifacts/page/ (ignored by git) and their paths printed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from playwright.async_api import ConsoleMessage, Page, WebSocket, async_playwright, expect

from integration_api.http.server import bind_socket
from integration_api.proto import integration_api_pb2 as pb
from integration_api.settings import Settings
from tests.conftest import RunningGateway, start_gateway

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "page"
# No network beyond 127.0.0.1, nothing of a previous profile, nothing that phones home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000  # generous: the CPU is shared; each wait ends as soon as its condition holds

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM} (install it with .ci/setup.sh)"
)


class _AccessLog(logging.Handler):
    """The gateway's access-log records (one per request), with an event to wait on."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, object]] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.access)  # type: ignore[attr-defined]
        self.changed.set()

    async def status_of(self, request_id: str) -> object:
        async with asyncio.timeout(WAIT_MS / 1000):
            while True:
                for fields in self.records:
                    if fields["request_id"] == request_id:
                        return fields["status"]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def access_log() -> Iterator[_AccessLog]:
    handler = _AccessLog()
    logger = logging.getLogger("integration_api.access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
async def site(settings: Settings) -> AsyncIterator[tuple[RunningGateway, str]]:
    """A gateway with its HTTP server on a socket bound to 127.0.0.1 port 0; yields it and the page's URL."""
    running = await start_gateway(settings)
    port = await running.server.start_http(bind_socket("127.0.0.1", 0))
    yield running, f"http://127.0.0.1:{port}/"
    await running.channel.close()
    await running.server.stop()


async def _send(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


def _screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


@dataclass
class _Browser:
    page: Page
    problems: list[str]  # console errors and warnings (a CSP violation is one), uncaught exceptions
    sockets: list[WebSocket]


@pytest.fixture
async def browser(site: tuple[RunningGateway, str], tmp_path: Path) -> AsyncIterator[_Browser]:
    """Headless chromium on the page, with a fresh profile (a persistent context is how Playwright takes a
    --user-data-dir of our choosing)."""
    _, url = site
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 780},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            seen = _Browser(page, [], [])
            page.on("console", lambda m: _keep_problem(seen.problems, m))
            page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))
            page.on("websocket", lambda ws: seen.sockets.append(ws))
            await page.goto(url)
            await expect(page).to_have_title("integration-api · chat")
            yield seen
        finally:
            await context.close()


@needs_chromium
async def test_page_streams_an_echo_and_cancels_a_slow_reply(
    site: tuple[RunningGateway, str], browser: _Browser, access_log: _AccessLog
) -> None:
    running, _ = site
    page = browser.page
    await page.get_by_label("Gateway API key or service token").fill(running.api_key)
    assert await page.get_by_label("Provider", exact=True).input_value() == "simulated"

    # 1. A quick echo, streamed into its own bubble, with its live figures.
    await _send(page, "hello from a real browser")
    first = page.locator("li.assistant").nth(0)
    await expect(first).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    await expect(first.locator(".text")).to_have_text("hello from a real browser")
    await expect(first.locator(".status")).to_have_text("done")
    await expect(first.locator(".stats")).to_contain_text("first token")
    await expect(first.locator(".stats")).to_contain_text("words/s")

    # 2. A slow reply; a quick one sent while it streams completes first, on the same socket.
    slow_words = [f"word{n}" for n in range(1, 31)]
    await page.get_by_label("Delay per word, ms (simulated)").fill("200")
    await _send(page, " ".join(slow_words))
    slow = page.locator("li.assistant").nth(1)
    await expect(slow.locator(".text")).to_contain_text("word2 ", timeout=WAIT_MS)
    await page.get_by_label("Delay per word, ms (simulated)").fill("0")
    await _send(page, "meanwhile on the same socket")
    quick = page.locator("li.assistant").nth(2)
    await expect(quick).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    await expect(quick.locator(".text")).to_have_text("meanwhile on the same socket")
    await expect(slow).to_have_attribute("data-state", "streaming")
    await page.screenshot(path=_screenshot_path("streaming.png"))

    # 3. Cancel the slow one: its cancelled error frame ends it, and the gateway stopped the upstream call.
    await slow.get_by_role("button", name="Cancel").click()
    await expect(slow).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
    await expect(slow.locator(".status")).to_have_text("cancelled")
    await expect(slow.get_by_role("button", name="Cancel")).to_have_count(0)
    slow_id = await slow.get_attribute("data-request-id")
    assert slow_id
    assert await access_log.status_of(slow_id) == "CANCELLED"
    cut = (await slow.locator(".text").inner_text()).split()
    assert 2 <= len(cut) < len(slow_words)
    assert cut == slow_words[: len(cut)]
    shot = _screenshot_path("cancelled.png")
    await page.screenshot(path=shot)
    print(f"screenshots: {shot.parent}/streaming.png, {shot}")

    assert len(browser.sockets) == 1, "every request went over one WebSocket"
    assert "/integration_api.UnifiedProviderService/StreamChat" in browser.sockets[0].url
    assert running.api_key not in browser.sockets[0].url
    assert not browser.problems, browser.problems


@needs_chromium
async def test_page_reports_a_refused_key_then_sends_history_model_and_credential(
    site: tuple[RunningGateway, str], browser: _Browser
) -> None:
    running, _ = site
    page = browser.page
    key_field = page.get_by_label("Gateway API key or service token")

    # A key the gateway refuses: the bridge's $status ends the socket, and the page says why.
    await key_field.fill("ia_nosuchkey_nosecret")
    await _send(page, "who am I")
    refused = page.locator("li.assistant").nth(0)
    await expect(refused).to_have_attribute("data-state", "error", timeout=WAIT_MS)
    await expect(refused.locator(".status")).to_have_text("UNAUTHENTICATED")
    await expect(refused.locator(".error")).to_be_visible()  # the gateway's message, whatever its words
    await expect(page.get_by_role("alert")).to_contain_text("UNAUTHENTICATED")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "error")

    # The request the page builds is a ChatRequest in the protobuf JSON mapping, with every field it has.
    await key_field.fill(running.api_key)
    await page.get_by_label("Model (optional)").fill("echo-1")
    await page.get_by_label("Provider key (optional)").fill("sk-from-the-page")
    await page.get_by_label("Delay per word, ms (simulated)").fill("50")
    built = pb.ChatRequest()
    json_format.ParseDict(await page.evaluate("buildRequest('r-json', 'hello')"), built)
    assert built.requestId == "r-json"
    assert built.providerName == "simulated"
    assert [(m.role, m.user.content) for m in built.conversations] == [("user", "hello")]  # the refused turn: not kept
    assert dict(built.credential.value) == {"key": "sk-from-the-page"}
    delay, model = struct_pb2.Value(), struct_pb2.Value()
    assert built.modelParameters["model.simulated_delay_ms"].Unpack(delay)
    assert built.modelParameters["model.name"].Unpack(model)
    assert (delay.number_value, model.string_value) == (50, "echo-1")

    # Sent for real (to the probe: the simulated provider, observed), on a new socket with the right key.
    await page.get_by_label("Provider", exact=True).fill("probe")
    await _send(page, "second try")
    reply = page.locator("li.assistant").nth(1)
    await expect(reply).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    await expect(reply.locator(".text")).to_have_text("second try")
    await expect(reply.locator(".who")).to_have_text("probe/echo-1")
    assert {"key": "sk-from-the-page"} in running.probe.credentials
    following = await page.evaluate("buildRequest('r-next', 'third')")
    assert [turn["role"] for turn in following["conversations"]] == ["user", "assistant", "user"]
    assert following["conversations"][1] == {"role": "assistant", "assistant": {"contents": ["second try"]}}
    assert "model.simulated_delay_ms" not in following["modelParameters"]  # for the simulated provider only
    assert len(browser.sockets) == 2
    await page.screenshot(path=_screenshot_path("refused-then-ok.png"))
    assert all(running.api_key not in ws.url for ws in browser.sockets)
    assert not browser.problems, browser.problems


def _keep_problem(problems: list[str], message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"console {message.type}: {message.text}")


async def test_the_page_and_its_files_are_served_with_a_same_origin_policy(site: tuple[RunningGateway, str]) -> None:
    """No browser needed: the HTTP server serves the three files with their types and the page's CSP."""
    _, url = site
    async with httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/static/app.js"' in page.text
        script = await client.get("/static/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "REQUEST_ACTION_CANCEL" in script.text
        assert (await client.get("/static/style.css")).headers["content-type"].startswith("text/css")
        assert (await client.get("/static/nothing.js")).status_code == 404
