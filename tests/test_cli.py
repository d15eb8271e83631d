"""The command line: serve (workers, config file, flags, logging), health and chat (TLS, tokens), emulate, --help.

`serve` runs as a real subprocess on a free port; `health` and `chat` run through typer's CliRunner on a thread,
so the event loop of the test keeps serving the in-process gateway meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer
from typer.testing import CliRunner, Result

from auth import issue_service_token
from integration_api import __version__
from integration_api.cli import app
from tests.certificates import self_signed
from tests.conftest import JWT_SECRET, RunningGateway, make_settings, start_gateway

CLEAN_ENV = {name: None for name in os.environ if name.startswith("INTEGRATION_API_")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    """`integration-api` as installed (the console script next to this Python), else the module."""
    script = Path(sys.executable).parent / "integration-api"
    return [str(script)] if script.exists() else [sys.executable, "-m", "integration_api.cli"]


async def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    runner = CliRunner(env={**CLEAN_ENV, "COLUMNS": "200", **(env or {})})
    return await asyncio.to_thread(runner.invoke, app, list(args))


# ---- serve, as a process


@contextmanager
def serving(tmp_path: Path, args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("INTEGRATION_API_")}
    # HTTP off (never the default port 8080 in tests) unless a test asks for it.
    environment |= {"INTEGRATION_API_PRELOAD_PROVIDERS": "false", "INTEGRATION_API_HTTP_PORT": "0", **env}
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen([*_command(), "serve", *args], stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _output(log: Path) -> str:
    return log.read_text()


async def wait_until_healthy(process: subprocess.Popen[bytes], port: int, log: Path, workers: int = 1) -> None:
    """Until `health` answers SERVING and every worker has logged that it listens."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}:\n{_output(log)}"
        healthy = await invoke("health", "--target", f"127.0.0.1:{port}", "--timeout", "1")
        if healthy.exit_code == 0 and _output(log).count("integration-api listening on") == workers:
            return
        await asyncio.sleep(0.1)  # polling a condition (the port opening), not a synchronisation sleep
    raise AssertionError(f"serve never became healthy:\n{_output(log)}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


async def test_serve_with_two_workers_and_a_config_file(tmp_path: Path) -> None:
    # The settings travel to spawned workers by pickle; the file's values must reach them too.
    port = _free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nauth_disabled = true\ngrace_period_s = 1\n')
    args = ["--workers", "2", "--config", str(config), "--port", str(port)]
    with serving(tmp_path, args, env={}) as process:
        await wait_until_healthy(process, port, tmp_path / "serve.log", workers=2)
        reply = await invoke("chat", "hello two workers", "--target", f"127.0.0.1:{port}")
        assert reply.exit_code == 0, reply.output  # no key needed: auth_disabled came from the file
        assert "hello two workers" in reply.stdout
        assert stop(process) == 0
    assert "started 2 workers" in (tmp_path / "serve.log").read_text()


async def test_serve_flag_beats_environment_and_logs_third_parties_at_warning(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "INTEGRATION_API_AUTH_DISABLED": "true",  # --auth-enabled overrides it
        "INTEGRATION_API_LOG_LEVEL": "DEBUG",
        "INTEGRATION_API_PROT": "1",  # a typo: warned about, ignored
        "INTEGRATION_API_DATA_DIR": str(tmp_path / "data"),
        "INTEGRATION_API_GRACE_PERIOD_S": "1",
    }
    with serving(tmp_path, ["--auth-enabled", "--port", str(port)], env=env) as process:
        await wait_until_healthy(process, port, tmp_path / "serve.log")
        refused = await invoke("chat", "hello", "--target", f"127.0.0.1:{port}")
        assert refused.exit_code == 2 and "refused" in refused.stderr
        assert stop(process) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "warning: INTEGRATION_API_PROT is set but names no setting" in log
    assert "INFO integration_api.server: integration-api listening" in log
    assert not re.search(r" DEBUG (?!integration_api|providers|auth)", log), log


# ---- one line for a bad setting, warnings for unknown variables


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve"], {"INTEGRATION_API_PORT": "99999"}, "INTEGRATION_API_PORT='99999'"),
        (["serve", "--workers", "0"], {}, "--workers 0"),
        (["serve", "--config", "/no/such/gateway.toml"], {}, "config file not found: /no/such/gateway.toml"),
        (["keys", "list"], {"INTEGRATION_API_DATA_DIR": "/tmp", "INTEGRATION_API_LOG_LEVEL": "LOUD"}, "'LOUD'"),
        (["keys", "token", "--organization", "o", "--project", "p"], {"INTEGRATION_API_IDLE_TIMEOUT_S": "x"}, "x"),
        (["health"], {"INTEGRATION_API_PORT": "-1"}, "INTEGRATION_API_PORT='-1'"),
    ],
)
async def test_a_bad_setting_is_one_line_and_exit_code_2(args: list[str], env: dict[str, str], expected: str) -> None:
    result = await invoke(*args, env=env)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and expected in line and "Traceback" not in result.output


async def test_unknown_variables_warn_client_variables_do_not(tmp_path: Path) -> None:
    env = {"INTEGRATION_API_PROT": "1", "INTEGRATION_API_KEY": "ia_x", "INTEGRATION_API_ENABLED": "true"}
    result = await invoke("keys", "list", "--data-dir", str(tmp_path), env=env)
    assert result.exit_code == 0
    [warning] = result.stderr.splitlines()
    assert "INTEGRATION_API_PROT" in warning and "did you mean INTEGRATION_API_PORT?" in warning


# ---- --help, --version


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and sub-command of the app (typer's groups are its own click's, so no isinstance)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


async def test_help_texts_survive_rich_markup() -> None:
    # Square brackets in a help text are Rich markup: "[env INTEGRATION_API_HOST]" used to vanish from --help.
    checked: set[str] = set()
    for path, command in _commands(typer.main.get_command(app)):
        wanted = {name for param in command.params for name in re.findall(r"INTEGRATION_API_\w+", str(param.help))}
        rendered = (await invoke(*path, "--help")).stdout
        checked.update(wanted)
        assert {name for name in wanted if name not in rendered} == set(), path
        assert " ." not in rendered, path
    assert {"INTEGRATION_API_HOST", "INTEGRATION_API_PORT", "INTEGRATION_API_DATA_DIR"} <= checked


async def test_auth_disabled_is_a_flag_pair_with_no_value() -> None:
    [line] = [line for line in (await invoke("serve", "--help")).stdout.splitlines() if "--auth-disabled" in line]
    assert "--auth-enabled" in line and "<bool>" not in line
    refused = await invoke("serve", "--auth-disabled", "true")
    assert refused.exit_code == 2 and "unexpected extra argument" in refused.output


async def test_version() -> None:
    result = await invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"integration-api {__version__}\n" == "integration-api 0.1.0\n"


# ---- health and chat, plaintext and TLS


async def test_health_command(gateway: RunningGateway) -> None:
    target = f"127.0.0.1:{gateway.server.port}"
    result = await invoke("health", "--target", target)
    assert result.exit_code == 0 and "serving" in result.output
    dead = await invoke("health", "--target", f"127.0.0.1:{_free_port()}", "--timeout", "0.5")
    assert dead.exit_code == 1 and dead.stderr.startswith("unhealthy: UNAVAILABLE")


async def test_health_finds_the_port_in_the_server_settings(gateway: RunningGateway) -> None:
    env = {"INTEGRATION_API_PORT": str(gateway.server.port), "INTEGRATION_API_HOST": "0.0.0.0"}
    result = await invoke("health", env=env)
    assert result.exit_code == 0, result.output


@pytest.fixture
async def tls_gateway(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Path, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    running = await start_gateway(make_settings(tmp_path, tls_cert_file=cert_file, tls_key_file=key_file))
    yield running, cert_file, key_file
    await running.channel.close()
    await running.server.stop()


async def test_health_over_tls(tls_gateway: tuple[RunningGateway, Path, Path]) -> None:
    gateway, cert_file, _ = tls_gateway
    target = f"127.0.0.1:{gateway.server.port}"
    assert (await invoke("health", "--target", target, "--root-cert", str(cert_file))).exit_code == 0
    named = await invoke("health", "--target", target, "--root-cert", str(cert_file), "--server-name", "localhost")
    assert named.exit_code == 0
    for refused in (
        ["--no-tls"],  # plaintext to a TLS port
        ["--tls"],  # the system's roots do not know a self-signed certificate
        ["--root-cert", str(cert_file), "--server-name", "gateway.example.com"],  # a name the certificate lacks
    ):
        result = await invoke("health", "--target", target, "--timeout", "2", *refused)
        assert result.exit_code == 1, refused


async def test_health_with_the_server_settings_uses_tls_and_its_certificate(
    tls_gateway: tuple[RunningGateway, Path, Path],
) -> None:
    # What the Docker HEALTHCHECK does: no flags, the server's own environment.
    gateway, cert_file, key_file = tls_gateway
    env = {
        "INTEGRATION_API_HOST": "0.0.0.0",
        "INTEGRATION_API_PORT": str(gateway.server.port),
        "INTEGRATION_API_TLS_CERT_FILE": str(cert_file),
        "INTEGRATION_API_TLS_KEY_FILE": str(key_file),
    }
    result = await invoke("health", env=env)
    assert result.exit_code == 0, result.output


async def test_chat_over_tls(tls_gateway: tuple[RunningGateway, Path, Path]) -> None:
    gateway, cert_file, _ = tls_gateway
    args = ["--target", f"127.0.0.1:{gateway.server.port}", "--api-key", gateway.api_key]
    result = await invoke("chat", "hello over tls", *args, "--root-cert", str(cert_file))
    assert result.exit_code == 0, result.output
    assert "hello over tls" in result.stdout
    plaintext = await invoke("chat", "hello", *args, "--no-tls")
    assert plaintext.exit_code == 2


async def test_chat_with_a_service_token(gateway: RunningGateway) -> None:
    token = issue_service_token(JWT_SECRET, "org-1", "proj-1")
    target = ["--target", f"127.0.0.1:{gateway.server.port}"]
    result = await invoke("chat", "hello with a token", *target, "--service-token", token)
    assert result.exit_code == 0, result.output
    assert "hello with a token" in result.stdout
    both = await invoke("chat", "hello", *target, "--service-token", token, "--api-key", gateway.api_key)
    assert both.exit_code == 2 and "not both" in both.stderr


# ---- emulate


async def test_emulate_runs_a_vendor_emulator_standalone() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "integration_api.cli", "emulate", "openai", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    url = f"http://127.0.0.1:{port}/v1/models"
                    async with session.get(url, headers={"Authorization": "Bearer k"}) as response:
                        assert response.status == 200
                        assert (await response.json())["object"] == "list"
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the emulator never answered")
    finally:
        process.terminate()
        process.wait(10)
