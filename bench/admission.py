"""The policy layer's own cost per request: `Policy.admit` + `Lease.finish`, in-process and with Redis limits.

The shape of rows (p) and (pr) of ``make bench`` (a key with a provider scope, rpm, tpm and a concurrency limit;
its project with rpm, tpm and a daily token budget: six rules), without the gRPC load around it, so that a change
to the limiter shows in microseconds rather than in a ratio of noisy requests/s. Requests run one after the
other (each admitted, then settled); the settlements still in flight are waited for at the end.

    python -m bench.admission [--requests 3000] [--redis-url redis://127.0.0.1:6379/11]

Prints CPU and wall microseconds per request for an unrestricted key (no rule: the fast path), then the limited
key in-process, then (when Redis answers) the limited key with the limits in Redis. The Redis database given is
used under the limiter's own key prefix and not flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from auth.principal import KeyScope, Principal
from auth.projects import Budget, ProjectRecord, ProjectStore
from integration_api.event_loop import run_event_loop
from integration_api.policy.policy import Estimate, Policy
from integration_api.settings import Settings
from providers.types import Usage

HIGH = 1_000_000_000  # limits never reached
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"


async def _measure(policy: Policy, principal: Principal, requests: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per admitted and settled request."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        lease = await policy.admit(principal, "simulated", "echo", True, Estimate(20, 100))
        lease.finish(Usage(20, 30))
        await asyncio.sleep(0)  # a request's other work: the settlement's task gets its turn
    await policy.drain()
    return (time.process_time() - cpu) / requests * 1e6, (time.perf_counter() - wall) / requests * 1e6


async def _run(requests: int, redis_url: str | None) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    project = ProjectRecord(
        "bench", "bench", KeyScope(rpm=HIGH, tpm=HIGH), budgets=(Budget("day", "tokens", float(HIGH)),)
    )
    ProjectStore(data_dir).set(project)
    limited = Principal(
        "bench", "bench", key_id="bench", scope=KeyScope(providers=("sim*",), rpm=HIGH, tpm=HIGH, max_concurrent=HIGH)
    )
    plain = Principal("other", "other", key_id="other")
    cases: list[tuple[str, str | None, Principal]] = [
        ("unrestricted key", None, plain),
        ("limited key, in-process", None, limited),
    ]
    if redis_url is not None:
        cases.append(("limited key, Redis", redis_url, limited))
    for label, url, principal in cases:
        settings = Settings(data_dir=data_dir, redis_url=None if url is None else SecretStr(url))
        policy = Policy(settings)
        try:
            await _measure(policy, principal, max(requests // 10, 1))  # warm-up: caches, connections
            cpu, wall = await _measure(policy, principal, requests)
        finally:
            await policy.aclose()
        print(f"{label:<26} {cpu:8.0f} µs CPU  {wall:8.0f} µs wall  per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="'' to skip the Redis case")
    args = parser.parse_args()
    run_event_loop(_run(args.requests, args.redis_url or None))  # on uvloop, as the server runs


if __name__ == "__main__":
    main()
