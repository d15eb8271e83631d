"""The official `openai` npm package, from Node, streams a chat through the gateway's /v1 (one streamed chat)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.http.conftest import HttpGateway

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: the openai npm package cannot run"),
]


async def test_node_openai_sdk_streams_a_chat(http_gateway: HttpGateway) -> None:
    assert NODE is not None
    if not (JS / "node_modules" / "openai").is_dir():
        pytest.fail("tests/http/js/node_modules/openai is missing: run `make venv` (npm ci in tests/http/js)")
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(JS / "stream_chat.mjs"),
        http_gateway.base_url,
        http_gateway.api_key,
        "hello from node",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["text"] == "hello from node"
    assert result["roles"] == ["assistant"]
    assert result["finish"] == "stop"
    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
