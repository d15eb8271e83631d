"""Thousands of streams opened at once (every backend reconnecting after a deploy) are all accepted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.conftest import make_settings, start_gateway
from tests.grpc_helpers import chat_request

STREAMS = 3_000


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll `condition` until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def round_trip(call: grpc.aio.StreamStreamCall[pb.ChatRequest, pb.ChatResponse]) -> str:
    """The requestId of the first frame answering one request written on `call`; an accepted stream answers."""
    try:
        await call.write(chat_request("r1", "storm", simulated_reply="ok"))
        frame = await call.read()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):  # InvalidStateError: it had ended before the write
        return f"refused: {(await call.code()).name}"
    return "ended" if frame is grpc.aio.EOF else frame.requestId


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
        if not all_accepted:  # gRPC's own default refuses part of such a storm: the reason for the setting
            await until(lambda: any(call.done() for call in calls), timeout=30)
            return
        # Every stream answers a request: proof that it was accepted (a refused one ends with an error instead),
        # where counting the calls not yet ended after some pause would only show that no refusal had come yet.
        replies = await asyncio.wait_for(asyncio.gather(*(round_trip(call) for call in calls)), 60)
        assert Counter(replies) == {"r1": STREAMS}
        for call in calls:
            call.cancel()
    finally:
        for channel in channels:
            await channel.close()
        await gateway.channel.close()
        await gateway.server.stop()
