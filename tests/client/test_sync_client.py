"""The synchronous Client against a real gateway: streams from many threads, cancel, unary calls, close."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from integration_api.client import (
    ChatResult,
    Client,
    Credential,
    RateLimitError,
    RequestCancelledError,
    StreamClosedError,
    TextDelta,
)
from tests.client.conftest import PROBE, SIM, target_of, user
from tests.conftest import RunningGateway


async def test_stream_events_and_convenience(sync_client: Client) -> None:
    def run() -> None:
        with sync_client.stream(SIM) as stream:
            events = list(stream.chat(user("sync hello world"), request_id="s1"))
            assert [e.text for e in events if isinstance(e, TextDelta)] == ["sync ", "hello ", "world"]
            assert isinstance(events[-1], ChatResult) and events[-1].text == "sync hello world"
            assert stream.chat(user("one two")).text() == "one two"
            assert list(stream.chat(user("a b")).text_stream) == ["a ", "b"]

    await asyncio.to_thread(run)


async def test_threads_share_one_stream(sync_client: Client, gateway: RunningGateway) -> None:
    def run() -> list[bool]:
        with sync_client.stream(PROBE) as stream, ThreadPoolExecutor(8) as pool:
            texts = [f"thread {n} says hello" for n in range(16)]
            futures = [
                pool.submit(lambda t: stream.chat(user(t), parameters={"simulated_delay_ms": 5}).text(), text)
                for text in texts
            ]
            return [future.result() == text for future, text in zip(futures, texts, strict=True)]

    assert all(await asyncio.to_thread(run))
    assert gateway.probe.peak_active > 1


async def test_cancel_and_break(sync_client: Client, gateway: RunningGateway) -> None:
    def run() -> None:
        with sync_client.stream(PROBE) as stream:
            slow = stream.chat(user(" ".join(["w"] * 200)), parameters={"simulated_delay_ms": 10}, request_id="s-slow")
            next(iter(slow))
            slow.cancel()
            with pytest.raises(RequestCancelledError):
                slow.result()
            for _event in stream.chat(
                user(" ".join(["w"] * 200)), parameters={"simulated_delay_ms": 10}, request_id="s-b"
            ):
                break
            assert stream.chat(user("after")).text() == "after"

    await asyncio.to_thread(run)
    await gateway.probe.wait_for(lambda: {"s-slow", "s-b"} <= set(gateway.probe.closed))


async def test_unary_calls_and_typed_errors(sync_client: Client) -> None:
    def run() -> None:
        assert sync_client.chat(user("hi there"), provider=SIM).text == "hi there"
        assert len(sync_client.embed(["a", "b"], provider=SIM).vectors) == 2
        assert sync_client.rerank("a", ["b", "a"], provider=SIM).results[0].index == 1
        assert sync_client.verify_credential(Credential.of(key="k"), provider=SIM).valid
        assert sync_client.moderate("fine", provider=SIM).scores["flagged"] == 0.0
        sync_client.check_connection()
        assert sync_client.get_version().protocol_revision >= 2
        with pytest.raises(RateLimitError):
            sync_client.chat(user("x"), provider=SIM, parameters={"simulated_error": 429})

    await asyncio.to_thread(run)


async def test_close_is_idempotent_and_final(gateway: RunningGateway) -> None:
    def run() -> None:
        client = Client(target_of(gateway), api_key=gateway.api_key)
        stream = client.stream(SIM)
        pending = stream.chat(user(" ".join(["w"] * 100)), parameters={"simulated_delay_ms": 20})
        client.close()
        client.close()
        assert client.is_closed
        with pytest.raises(StreamClosedError):
            client.chat(user("x"))
        with pytest.raises(StreamClosedError):
            pending.result()

    await asyncio.to_thread(run)
