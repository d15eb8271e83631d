"""The light client install: the wheel without extras installs offline, pulls in no server dependency, and talks
to a real gateway.

Integration test: it builds the wheel from a copy of the working tree, creates a fresh venv and installs the wheel
into it with ``--no-index`` from the wheelhouse `make venv` downloads (``<venv>/wheelhouse``). Resolution is real:
if the wheel required a vendor SDK or any other server-only package, pip would fail for want of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import target_of
from tests.conftest import RunningGateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # the venv running the tests is the one `make venv` filled
SOURCES = ("pyproject.toml", "README.md", "integration_api", "providers", "auth")
SERVER_ONLY = ("openai", "anthropic", "google-genai", "mistralai", "cohere", "replicate", "aiohttp", "httpx2")

CLIENT_SCRIPT = """
import asyncio, json, sys

import integration_api
from integration_api import AsyncClient


async def main(target, api_key):
    async with AsyncClient(target, api_key=api_key) as client, client.stream("simulated") as stream:
        reply = stream.chat([{"role": "user", "content": "hello from a light install"}], model="simulated-1")
        return "".join([text async for text in reply.text_stream])


text = asyncio.run(main(sys.argv[1], sys.argv[2]))
print(json.dumps({"text": text, "package": integration_api.__file__}))
"""

LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
)


def isolated_env() -> dict[str, str]:
    """This machine's pip configuration (extra indexes, find-links) must not leak into the offline install."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(*args: str | Path, cwd: Path) -> str:
    completed = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=isolated_env(), capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, f"{args} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(work: Path) -> Path:
    """A wheel of the working tree, built from a copy so that no build output lands in the shared checkout."""
    source = work / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    dist = work / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist,
        source, cwd=work)  # fmt: skip
    (wheel,) = dist.glob("integration_api-*.whl")
    return wheel


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding `pip install integration-api` (no extras), installed offline."""
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run `make venv` (or `make wheelhouse`) first")
    work = tmp_path_factory.mktemp("packaging")
    wheel = build_wheel(work)
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=work)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELHOUSE, wheel, cwd=work)
    return python


def test_client_install_has_no_server_dependency(client_python: Path) -> None:
    installed = {canonical(name) for name in json.loads(run(client_python, "-I", "-c", LIST_DISTRIBUTIONS, cwd=ROOT))}
    assert "integration-api" in installed
    assert {"grpcio", "protobuf"} <= installed
    assert installed.isdisjoint(SERVER_ONLY), sorted(installed.intersection(SERVER_ONLY))


async def test_client_install_streams_a_chat(client_python: Path, gateway: RunningGateway, tmp_path: Path) -> None:
    script = tmp_path / "light_client.py"
    script.write_text(CLIENT_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        client_python, "-I", script, target_of(gateway), gateway.api_key,
        cwd=tmp_path, env=isolated_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["text"] == "hello from a light install"
    assert Path(result["package"]).is_relative_to(client_python.parents[1])  # the installed wheel, not the checkout
