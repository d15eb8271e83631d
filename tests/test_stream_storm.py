"""Thousands of streams opened at once (every backend reconnecting after a deploy) are all accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.conftest import make_settings, start_gateway
from tests.grpc_helpers import chat_request

STREAMS = 3_000


@pytest.mark.parametrize(("max_pending", "all_accepted"), [(None, True), (1_000, False)])
async def test_a_reconnect_storm_is_accepted_whole(tmp_path: Path, max_pending: int | None, all_accepted: bool) -> None:
    overrides = {} if max_pending is None else {"max_pending_streams": max_pending}
    gateway = await start_gateway(make_settings(tmp_path, **overrides))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gateway.server.port}") for _ in range(STREAMS // 100)]
    try:
        calls = [
            pb_grpc.UnifiedProviderServiceStub(channels[i % len(channels)]).StreamChat(metadata=gateway.metadata)
            for i in range(STREAMS)
        ]
        await asyncio.gather(*(call.wait_for_connection() for call in calls), return_exceptions=True)
        await asyncio.sleep(0.5)
        refused = [call for call in calls if call.done()]
        if not all_accepted:  # gRPC's own default refuses part of such a storm: the reason for the setting
            assert refused
            return
        assert refused == []
        for call in calls[:: STREAMS // 10]:  # the streams work
            await call.write(chat_request("r1", "storm", simulated_reply="ok"))
            frame = await asyncio.wait_for(call.read(), 10)
            assert frame.requestId == "r1"
        for call in calls:
            call.cancel()
    finally:
        for channel in channels:
            await channel.close()
        await gateway.channel.close()
        await gateway.server.stop()
