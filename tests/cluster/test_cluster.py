"""Two replicas behind nginx behave as one service: load spreads, a drained or killed replica loses no request
silently, aged streams move, and sessions and rate limits are shared through Redis (issue 14 item 6)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter

import pytest

from integration_api import AsyncClient
from integration_api.client import APIError, RateLimitError
from tests.cluster.conftest import STREAM_AGE_S, Load, LocalCluster, run_load, wait_until

pytestmark = pytest.mark.cluster

REPLICAS = ("replica-1", "replica-2")


def ok_lines(cluster: LocalCluster, load: Load) -> Counter[str]:
    """How many times each of the load's requests ended OK on any replica (a resend must never run twice)."""
    ids = set(load.outcomes)
    return Counter(
        line[0] for replica in REPLICAS for line in cluster.access(replica) if line[0] in ids and line[3] == "OK"
    )


async def test_load_through_the_balancer_reaches_both_replicas(cluster: LocalCluster) -> None:
    load = await run_load(cluster.address, cluster.key, streams=6, requests_per_stream=8)

    assert load.failed == {}
    assert len(load.succeeded) == 48
    served = {replica: cluster.served(replica, load.succeeded) for replica in REPLICAS}
    assert served["replica-1"] and served["replica-2"], {name: len(ids) for name, ids in served.items()}
    assert served["replica-1"] | served["replica-2"] == load.succeeded


async def test_an_aged_stream_moves_to_the_other_replica_without_losing_a_request(cluster: LocalCluster) -> None:
    ids: list[str] = []

    def server_streams() -> set[str]:
        wanted = set(ids)
        return {line[1] for replica in REPLICAS for line in cluster.access(replica) if line[0] in wanted}

    # One client stream, busy for a few of its ages: each retirement reopens it through nginx, on the next replica.
    async with AsyncClient(cluster.address, api_key=cluster.key) as client, client.stream("simulated") as stream:
        async with asyncio.timeout(10 * STREAM_AGE_S):
            while len(server_streams()) < 3:
                ids.append(f"aged-{uuid.uuid4().hex[:12]}")
                response = stream.chat([{"role": "user", "content": "still here"}], request_id=ids[-1])
                assert (await response.text()).strip() == "still here"

    ok = Counter(line[0] for replica in REPLICAS for line in cluster.access(replica) if line[3] == "OK")
    assert [ok[request_id] for request_id in ids] == [1] * len(ids)
    assert all(cluster.served(replica, set(ids)) for replica in REPLICAS)


async def load_and_signal(cluster: LocalCluster, replica: str, signal_number: int) -> tuple[Load, int | None]:
    """240 requests over 8 streams; once `replica` has served 10 of them, it gets `signal_number`; then it is
    restarted, also when the load fails (the next tests need both replicas). Returns the load and the replica's
    exit code."""
    load = Load()
    child = cluster.cluster.children[cluster.cluster.replica(replica).pid]
    running = asyncio.ensure_future(
        run_load(cluster.address, cluster.key, streams=8, requests_per_stream=30, load=load)
    )
    await wait_until(lambda: len(cluster.served(replica, set(load.outcomes))) >= 10)
    child.send_signal(signal_number)
    try:
        await running  # every request has its outcome within its client-side deadline
    finally:
        await cluster.restart(replica)
    return load, child.returncode


async def test_sigterm_on_a_replica_under_load_loses_no_request(cluster: LocalCluster) -> None:
    load, returncode = await load_and_signal(cluster, "replica-1", signal.SIGTERM)

    # Each request either finished on a replica or was refused before it ran and resent by the client: none
    # failed, and none ran twice.
    assert load.failed == {}
    assert len(load.succeeded) == 240
    assert set(ok_lines(cluster, load).values()) == {1}
    assert returncode == 0  # drained and exited cleanly
    assert cluster.served("replica-2", load.succeeded)


async def test_sigkill_on_a_replica_under_load_ends_each_request_once_and_in_time(cluster: LocalCluster) -> None:
    load, _ = await load_and_signal(cluster, "replica-2", signal.SIGKILL)

    assert len(load.outcomes) == load.started == 240
    failed = load.failed
    assert not [error for error in failed.values() if not isinstance(error, APIError)], "a request hung"
    # Only what was in flight on the killed replica may fail (3 per stream), each with one retryable error.
    assert len(failed) <= 24
    assert all(error.retryable for error in failed.values() if isinstance(error, APIError))
    assert set(ok_lines(cluster, load).values()) <= {1}


async def test_a_session_created_on_one_replica_is_used_on_the_other(cluster: LocalCluster) -> None:
    one, two = (f"127.0.0.1:{cluster.cluster.replica(name).port}" for name in REPLICAS)
    async with AsyncClient(one, api_key=cluster.key) as first, AsyncClient(two, api_key=cluster.key) as second:
        session = await first.create_session("simulated", system="Be brief.")
        async with second.stream("simulated") as stream:
            text = await stream.chat(
                [{"role": "user", "content": "hello from the other replica"}], session_id=session.id
            ).text()
        assert text.strip() == "hello from the other replica"
        info = await first.get_session(session.id, include_messages=True)
        await second.delete_session(session.id)

    assert info.message_count == 2  # the turn taken through replica 2, seen from replica 1


async def test_a_rate_limit_holds_across_replicas(cluster: LocalCluster) -> None:
    from deploy.cluster.cluster import create_key

    key = await asyncio.to_thread(create_key, cluster.cluster, "cluster-rpm", "--rpm", "3")
    one, two = (f"127.0.0.1:{cluster.cluster.replica(name).port}" for name in REPLICAS)
    async with AsyncClient(one, api_key=key) as first, AsyncClient(two, api_key=key) as second:
        async with first.stream("simulated") as stream:
            for index in range(3):
                await stream.chat([{"role": "user", "content": f"allowed {index}"}]).text()
        async with second.stream("simulated") as stream:
            with pytest.raises(RateLimitError):
                await stream.chat([{"role": "user", "content": "over the key's 3 per minute"}]).text()
