"""One local cluster (deploy/cluster: 2 replicas, Redis, nginx) for the module's tests, and load through it.

The replicas retire their streams every few seconds (INTEGRATION_API_MAX_CONNECTION_AGE_S), so every test here also
runs across stream retirements. A test that stops a replica starts it again in place (same port) before the next.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.cluster import cluster as local_cluster
from integration_api import AsyncClient
from integration_api.client import APIError

pytestmark = pytest.mark.cluster

STREAM_AGE_S = 3.0
REDIS_DB = 13  # a database of the machine's Redis that no other test uses
REPLICA_ENV = {
    "INTEGRATION_API_PRELOAD_PROVIDERS": "false",  # only the simulated provider is used: start in ~1 s
    "INTEGRATION_API_MAX_CONNECTION_AGE_S": str(STREAM_AGE_S),
    "INTEGRATION_API_MAX_CONNECTION_AGE_GRACE_S": "10",
    "INTEGRATION_API_GRACE_PERIOD_S": "10",
}
REQUEST_DEADLINE_S = 20.0  # client side: no request may take longer, whatever happens to the replicas
_ACCESS_LINE = re.compile(r"integration_api\.access: request=(\S+) stream=(\S+) rpc=(\S+) .* status=(\S+) ")


def _redis_answers() -> bool:
    if shutil.which("redis-cli") is None:
        return False
    return subprocess.run(["redis-cli", "ping"], capture_output=True, check=False).stdout.strip() == b"PONG"


@dataclass
class LocalCluster:
    """The running cluster, an API key its replicas share, and helpers to read and hurt it."""

    cluster: local_cluster.Cluster
    key: str

    @property
    def address(self) -> str:
        return self.cluster.address

    def access(self, replica: str) -> list[tuple[str, str, str, str]]:
        """(request id, stream id, rpc, status) of every access-log line of `replica` so far."""
        text = Path(self.cluster.replica(replica).log).read_text(errors="replace")
        return [match.groups() for match in _ACCESS_LINE.finditer(text)]  # type: ignore[misc]

    def served(self, replica: str, request_ids: set[str], status: str = "OK") -> set[str]:
        return {line[0] for line in self.access(replica) if line[0] in request_ids and line[3] == status}

    async def restart(self, replica: str) -> None:
        """Start `replica` again on its port (after a test stopped it); return once nginx sends it requests again
        (it skips a replica for fail_timeout after a failed connection)."""
        process = self.cluster.replica(replica)
        child = self.cluster.children.pop(process.pid, None)
        if child is not None:
            await asyncio.to_thread(child.wait, 30)
        started = local_cluster.start_replica(self.cluster, replica, REPLICA_ENV, port=process.port)
        await asyncio.to_thread(local_cluster.wait_serving, started, self.cluster.children[started.pid])
        probe = Load()
        async with asyncio.timeout(30):
            while not self.served(replica, set(probe.outcomes)):
                await run_load(self.address, self.key, streams=2, requests_per_stream=2, delay_ms=0, load=probe)
                probe.tag = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not Path(local_cluster.NGINX).exists():
        pytest.skip(f"nginx is not installed ({local_cluster.NGINX}): `bash .ci/setup.sh` as root installs it")
    if not _redis_answers():
        pytest.skip("no Redis answers redis-cli ping on 127.0.0.1:6379")
    run_dir = tmp_path_factory.mktemp("cluster")
    started = local_cluster.up(run_dir, replicas=2, env=REPLICA_ENV, redis_db=REDIS_DB)
    try:
        yield LocalCluster(started, local_cluster.create_key(started, "cluster-tests"))
    finally:
        local_cluster.down(cluster=started)


@dataclass
class Load:
    """Requests sent through the load balancer on several streams; each one's single outcome."""

    outcomes: dict[str, object] = field(default_factory=dict)  # request id -> text, or the exception it raised
    started: int = 0
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # request ids are unique across the tests

    @property
    def succeeded(self) -> set[str]:
        return {rid for rid, outcome in self.outcomes.items() if isinstance(outcome, str)}

    @property
    def failed(self) -> dict[str, BaseException]:
        return {rid: outcome for rid, outcome in self.outcomes.items() if isinstance(outcome, BaseException)}


async def run_load(
    address: str,
    key: str,
    *,
    streams: int,
    requests_per_stream: int,
    delay_ms: int = 40,
    load: Load | None = None,
) -> Load:
    """`streams` streams, each sending `requests_per_stream` requests, three at a time, through `address`."""
    load = load or Load()

    async def one(stream: object, stream_index: int, index: int) -> None:
        request_id = f"{load.tag}-{stream_index}-{index}"
        load.started += 1
        try:
            async with asyncio.timeout(REQUEST_DEADLINE_S):
                response = stream.chat(  # type: ignore[attr-defined]
                    [{"role": "user", "content": f"request {index} of the cluster test"}],
                    parameters={"simulated_delay_ms": delay_ms},
                    request_id=request_id,
                )
                load.outcomes[request_id] = await response.text()
        except (APIError, TimeoutError) as error:
            load.outcomes[request_id] = error

    async def stream_load(client: AsyncClient, stream_index: int) -> None:
        # Three requests in flight per stream at all times (each next one starts as one ends): so a draining or
        # retiring replica always gets new requests on streams that still have some running, and refuses them.
        indices = iter(range(requests_per_stream))
        async with client.stream("simulated") as stream:

            async def worker() -> None:
                for index in indices:
                    await one(stream, stream_index, index)

            await asyncio.gather(*(worker() for _ in range(3)))

    async with AsyncClient(address, api_key=key) as client:
        await asyncio.gather(*(stream_load(client, i) for i in range(streams)))
    return load


async def wait_until(condition: object, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)
