"""Starting each server the benchmark measures, in its own process: the echo, the gateway, the emulator.

The gateway is the real thing, `integration-api serve` (one process), with a fresh key store holding one API
key the load generators send, and the OpenAI adapter pointed at the emulator by the operator-side
`INTEGRATION_API_PROVIDER_BASE_URLS`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from auth import ApiKeyStore
from bench.procs import ServerProcess, free_port, start_server


@dataclass
class Gateway:
    server: ServerProcess
    api_key: str
    data_dir: Path
    http_port: int = 0  # the HTTP front door's port (0: off)

    def stop(self) -> None:
        """Stop the process, then remove its key store."""
        self.server.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),)


def start_echo(log_dir: Path, words: int, name: str = "echo") -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.echo_server", "--port", str(port), "--words", str(words)]
    return start_server(name, argv, port, log_dir)


def start_emulator(log_dir: Path, words: int) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.emulator_server", "--port", str(port), "--words", str(words)]
    return start_server("emulator", argv, port, log_dir)


def emulator_base_url(emulator: ServerProcess) -> str:
    return f"http://127.0.0.1:{emulator.port}/v1"


def start_passthrough(log_dir: Path, upstream: str) -> ServerProcess:
    """Scenario (g)'s bare ASGI pass-through proxy (bench/asgi_passthrough.py) in front of `upstream`."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.asgi_passthrough", "--port", str(port), "--upstream", upstream]
    return start_server("passthrough", argv, port, log_dir)


def start_gateway(
    log_dir: Path,
    *,
    emulator: ServerProcess | None = None,
    name: str = "gateway",
    workers: int = 1,
    http: bool = False,
    settings: dict[str, str] | None = None,
) -> Gateway:
    """`http`: also serve the HTTP front door (on a free port; otherwise HTTP is off). `settings`: more
    INTEGRATION_API_* variables for the server."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    api_key, _ = ApiKeyStore(data_dir).create(name="bench", organization_id="bench", project_id="bench")
    http_port = free_port() if http else 0
    env = {
        "INTEGRATION_API_DATA_DIR": str(data_dir),
        "INTEGRATION_API_LOG_LEVEL": "WARNING",
        "INTEGRATION_API_AUTH_DISABLED": "false",
        "INTEGRATION_API_HTTP_PORT": str(http_port),
    }
    env.update(settings or {})
    if emulator is not None:
        env["INTEGRATION_API_PROVIDER_BASE_URLS"] = json.dumps({"openai": emulator_base_url(emulator)})
    port = free_port()
    argv = [sys.executable, "-m", "integration_api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    try:
        server = start_server(name, argv, port, log_dir, env=env)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return Gateway(server, api_key, data_dir, http_port)
