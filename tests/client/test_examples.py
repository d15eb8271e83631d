"""Every example in examples/ runs against a real gateway with the simulated provider."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.client.conftest import target_of
from tests.conftest import RunningGateway

EXAMPLES = Path(__file__).parents[2] / "examples"


def example(name: str) -> ModuleType:
    return importlib.import_module(f"examples.{name}")


async def test_streaming_chat(gateway: RunningGateway, capsys: pytest.CaptureFixture[str]) -> None:
    text = await example("streaming_chat").main(target_of(gateway), gateway.api_key)
    assert text == "Streaming means every word arrives as soon as it is ready."
    assert text in capsys.readouterr().out


async def test_tool_use_loop(gateway: RunningGateway) -> None:
    assert await example("tool_use").main(target_of(gateway), gateway.api_key) == "It is 21 °C and sunny in Paris."


async def test_concurrent_conversations(gateway: RunningGateway) -> None:
    transcripts = await example("concurrent_conversations").main(target_of(gateway), gateway.api_key, 10)
    assert len(transcripts) == 10
    assert transcripts["user-3"] == ["Hello, I am user-3.", "user-3 asks a follow-up question."]


async def test_embeddings(gateway: RunningGateway) -> None:
    module = example("embeddings")
    ranked = await module.main(target_of(gateway), gateway.api_key)
    assert ranked[0] == pytest.approx((1.0, module.DOCUMENTS[2]))


async def test_sync_client(gateway: RunningGateway) -> None:
    module = example("sync_client")
    assert await asyncio.to_thread(module.main, target_of(gateway), gateway.api_key) == "And a unary call."


async def test_an_example_runs_as_a_script(gateway: RunningGateway) -> None:
    environment = {**os.environ, "INTEGRATION_API_TARGET": target_of(gateway), "INTEGRATION_API_KEY": gateway.api_key}
    process = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLES / "sync_client.py")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert "No event loop in sight." in process.stdout
