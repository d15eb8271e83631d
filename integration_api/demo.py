"""The demo: a server plus a client streaming a reply from the built-in `simulated` provider, no keys needed.

The client side is written with ``integration_api.client``, exactly as a backend service would use it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from integration_api.client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    AuthenticationError,
    ChatResult,
    ClientDisabledError,
    Credential,
    PermissionDeniedError,
    TextDelta,
)

# Failures of the connection or the stream itself, rather than of the one request (exit code 2, as before).
_REFUSED = (AuthenticationError, PermissionDeniedError, APIConnectionError, ClientDisabledError)
DEMO_MESSAGE = "Hello from integration-api! This reply is streamed word by word over one gRPC stream."


def _print_result(result: ChatResult, started: float) -> None:
    usage = result.usage
    first_ms = result.timings.first_token_ms or 0.0
    total_ms = 1000 * (time.perf_counter() - started)
    print(f"\n\n[{result.finish_reason}] {usage.input_tokens} tokens in, {usage.output_tokens} out;")
    print(f"first token after {first_ms:.1f} ms, {total_ms:.0f} ms in all")


@dataclass(frozen=True)
class Connection:
    """How `integration-api chat` reaches the gateway: the target, one way to authenticate, TLS."""

    target: str
    api_key: str | None = field(default=None, repr=False)
    service_token: str | None = field(default=None, repr=False)
    tls: bool | None = None
    root_certificates: Path | None = None

    def client(self) -> AsyncClient:
        return AsyncClient(
            self.target,
            api_key=self.api_key,
            service_token=self.service_token,
            tls=self.tls,
            root_certificates=self.root_certificates,
        )


async def stream_one_reply(
    connection: Connection,
    message: str,
    provider: str,
    model: str,
    credential_key: str | None,
    delay_ms: int,
) -> int:
    """Send one request on a StreamChat stream and print the reply as it arrives; returns an exit code."""
    parameters = {"simulated_delay_ms": delay_ms} if delay_ms and provider == "simulated" else {}
    credential = Credential.of(key=credential_key) if credential_key else None
    started = time.perf_counter()
    async with connection.client() as client, client.stream(provider) as stream:
        response = stream.chat(
            [{"role": "user", "content": message}],
            model=model or None,
            credential=credential,
            parameters=parameters,
            request_id="demo-1",
        )
        try:
            async for event in response:
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                elif isinstance(event, ChatResult):
                    _print_result(event, started)
        except _REFUSED as error:
            print(f"\nthe gateway refused the stream: {error}", file=sys.stderr)
            return 2
        except APIError as error:
            print(f"\nerror {error.code} {error.status}: {error.message}", file=sys.stderr)
            return 1
    return 0


async def run_demo() -> int:
    """Start a gateway on a free port with a fresh key store, create a key, stream a reply, stop."""
    from auth import ApiKeyStore
    from integration_api.server import GatewayServer
    from integration_api.settings import Settings

    with tempfile.TemporaryDirectory(prefix="integration-api-demo-") as data_dir:
        settings = Settings(host="127.0.0.1", port=0, data_dir=Path(data_dir))
        server = GatewayServer(settings)
        port = await server.start()
        api_key, _ = ApiKeyStore(settings.data_dir).create(name="demo", organization_id="demo", project_id="demo")
        print(
            f"integration-api is serving on 127.0.0.1:{port}; created a demo API key; asking the simulated provider:\n"
        )
        try:
            connection = Connection(f"127.0.0.1:{port}", api_key=api_key)
            return await stream_one_reply(connection, DEMO_MESSAGE, "simulated", "", None, 60)
        finally:
            await server.drain_and_stop(1.0)
