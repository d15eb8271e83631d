"""Stream age (max_connection_age_s) against one real gateway: the server retires a busy stream, refusing its new
requests with UNAVAILABLE + NOT_STARTED; the client resends those on a new call while the old one finishes what
runs on it. No request is lost, none runs twice, and the caller never sees a refusal."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from integration_api.client import AsyncClient
from tests.client.conftest import target_of, user
from tests.conftest import make_settings, start_gateway

_ACCESS = re.compile(r"request=(\S+) stream=(\S+) .* status=(\S+) ")


async def test_a_retired_stream_loses_no_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="integration_api.access")
    running = await start_gateway(make_settings(tmp_path, max_connection_age_s=0.3, max_connection_age_grace_s=5))
    texts: dict[str, str] = {}

    def access(status: str) -> list[tuple[str, str]]:
        """(request id, stream id) of the access lines with `status`."""
        lines = [_ACCESS.search(r.getMessage()) for r in caplog.records if r.name == "integration_api.access"]
        return [(m[1], m[2]) for m in lines if m is not None and m[3] == status]

    def enough() -> bool:
        refused = [rid for rid, _ in access("UNAVAILABLE") if rid in texts]
        streams = {stream for rid, stream in access("OK") if rid in texts}
        return bool(refused) and len(streams) >= 3

    try:
        async with AsyncClient(target_of(running), api_key=running.api_key) as client, client.stream() as stream:

            async def worker(name: str) -> None:
                index = 0
                while not enough():
                    request_id = f"{name}-{index}"
                    index += 1
                    texts[request_id] = ""
                    reply = stream.chat(
                        user(f"{name} {index}"), parameters={"simulated_delay_ms": 15}, request_id=request_id
                    )
                    texts[request_id] = await reply.text()

            async with asyncio.timeout(60):
                await asyncio.gather(*(worker(f"w{n}") for n in range(3)))
    finally:
        await running.channel.close()
        await running.server.stop()

    assert all(text.strip() == f"{rid.split('-')[0]} {int(rid.split('-')[1]) + 1}" for rid, text in texts.items())
    ran = Counter(rid for rid, _ in access("OK"))
    assert all(ran[request_id] == 1 for request_id in texts)  # the refused ones ran once, on the next call
