"""Every example in examples/ runs as its docs say: the venv's Python, from the repository root, as a script.

Each runs as a subprocess (no PYTHONPATH, no import from this test process) against a real gateway this test
starts, with the simulated provider, and its output is checked.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.client.conftest import target_of
from tests.conftest import RunningGateway

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"

# example -> lines its output must contain
EXPECTED = {
    "streaming_chat.py": ["Streaming means every word arrives as soon as it is ready."],
    "tool_use.py": ["ran get_weather(", "It is 21 °C and sunny in Paris."],
    "concurrent_conversations.py": [
        "25 conversations, 50 requests, one stream",
        "user-3: Hello, I am user-3. | user-3 asks a follow-up question.",
    ],
    "embeddings.py": ["+1.000  Requests on a stream are multiplexed by request id."],
    "sync_client.py": ["No event loop in sight.", "And a unary call."],
}


def test_every_example_is_covered_and_says_how_to_run_it() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == set(EXPECTED)
    readme = (EXAMPLES / "README.md").read_text()
    assert ".venv/bin/python examples/" in readme
    for name in EXPECTED:
        assert f".venv/bin/python examples/{name}" in (EXAMPLES / name).read_text()
        assert f"`{name}`" in readme


async def run_example(name: str, environment: dict[str, str]) -> tuple[int, str, str]:
    # asyncio's subprocess, so this event loop keeps serving the gateway while the example talks to it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,  # .venv/bin/python when the suite runs as `make test` / `.venv/bin/pytest`
        f"examples/{name}",
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_runs_as_a_script(gateway: RunningGateway, name: str) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment |= {"INTEGRATION_API_TARGET": target_of(gateway), "INTEGRATION_API_KEY": gateway.api_key}
    code, stdout, stderr = await run_example(name, environment)
    assert code == 0, stderr
    for expected in EXPECTED[name]:
        assert expected in stdout, stdout
