"""The throughput scenarios (a)-(g): which servers each starts, which load it sends, and one measurement.

Every measurement runs its load generators in separate processes (`run_processes`) in one window after a
warm-up, and reads the CPU time of the server under test (and of the upstream emulator) at the window's start
and end, so CPU per request covers exactly the requests counted; the machine's busy and stolen CPU over the same
window tell whether other processes or other guests of the VM host were competing with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import interleave, observability, peers, policy, routing, sessions
from bench.http_load import AiohttpLoad, OpenAISDKLoad
from bench.procs import ServerProcess, free_port, machine_busy_seconds, steal_seconds
from bench.servers import emulator_base_url, start_echo, start_emulator, start_gateway, start_passthrough
from bench.ws_load import WebSocketStreamChatLoad
from integration_api.loadtest import GrpcLoad, LoadConfig, LoadJob, run_processes

WORDS = 20  # text frames per request; each request ends with one more, the final frame
REPLY = " ".join(f"word{i}" for i in range(WORDS))


@dataclass(frozen=True)
class Timing:
    warmup_s: float = 2.0
    duration_s: float = 8.0
    clients: int = 2  # client processes for the concurrent level


@dataclass
class Context:
    timing: Timing
    log_dir: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class Setup:
    """The servers of one scenario, and the load generator for a number of concurrent streams."""

    measured: ServerProcess
    upstream: ServerProcess | None
    jobs: Callable[[int, int], list[LoadJob]]  # (streams, processes) -> one job per client process


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    levels: tuple[int, ...]
    setup: Callable[[Context, contextlib.ExitStack], Setup | None]
    interleaved: bool = False  # measured at each level with the others so marked, in turns (``bench.interleave``)


def _grpc_jobs(config: LoadConfig) -> Callable[[int, int], list[LoadJob]]:
    def jobs(streams: int, processes: int) -> list[LoadJob]:
        whole = dataclasses.replace(config, streams=streams)
        return [GrpcLoad(part) for part in whole.split(processes)]

    return jobs


def _http_jobs(make: Callable[[int], LoadJob]) -> Callable[[int, int], list[LoadJob]]:
    def jobs(streams: int, processes: int) -> list[LoadJob]:
        shares = [streams // processes + (1 if i < streams % processes else 0) for i in range(processes)]
        return [make(share) for share in shares if share]

    return jobs


def _stopping(stack: contextlib.ExitStack, server: ServerProcess) -> ServerProcess:
    stack.callback(server.stop)
    return server


def _setup_echo(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    echo = _stopping(stack, start_echo(ctx.log_dir, WORDS))
    config = LoadConfig(target=f"127.0.0.1:{echo.port}", parameters={"simulated_reply": REPLY})
    return Setup(echo, None, _grpc_jobs(config))


def _setup_simulated(ctx: Context, stack: contextlib.ExitStack, workers: int = 1) -> Setup:
    gateway = start_gateway(ctx.log_dir, workers=workers)
    stack.callback(gateway.stop)
    config = LoadConfig(target=gateway.target, metadata=gateway.metadata, parameters={"simulated_reply": REPLY})
    return Setup(gateway.server, None, _grpc_jobs(config))


def _setup_policy(ctx: Context, stack: contextlib.ExitStack, redis: bool = False) -> Setup | None:
    """(p) / (pr): (b) with a scoped key with limits and a project with limits and a budget (``bench.policy``)."""
    settings: dict[str, Any] | None = None
    if redis:
        settings, missing = policy.redis_settings()
        if settings is None:
            ctx.notes.append(f"(pr) skipped: {missing}.")
            return None
        policy.flush_redis(stack)
    gateway = start_gateway(ctx.log_dir, settings=settings)
    stack.callback(gateway.stop)
    policy.limit_everything(gateway)
    config = LoadConfig(target=gateway.target, metadata=gateway.metadata, parameters={"simulated_reply": REPLY})
    return Setup(gateway.server, None, _grpc_jobs(config))


def _setup_observed(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    """(o): (b) with /metrics scraped every second and each request traced to OTLP (``bench.observability``)."""
    sink = observability.TraceSink()
    stack.callback(sink.stop)
    metrics_port = free_port()
    gateway = start_gateway(ctx.log_dir, settings=observability.observed_settings(sink, metrics_port))
    stack.callback(gateway.stop)
    scraper = observability.Scraper(f"http://127.0.0.1:{metrics_port}/metrics")
    stack.callback(lambda: ctx.notes.append(f"(o): {scraper.scrapes} scrapes, {sink.spans} spans received."))
    stack.callback(scraper.stop)
    config = LoadConfig(target=gateway.target, metadata=gateway.metadata, parameters={"simulated_reply": REPLY})
    return Setup(gateway.server, None, _grpc_jobs(config))


def _setup_bridge(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    """(b)'s requests over the gRPC-JSON bridge's WebSocket instead of gRPC: the same gateway process and provider."""
    gateway = start_gateway(ctx.log_dir, http=True)
    stack.callback(gateway.stop)
    base_url = f"ws://127.0.0.1:{gateway.http_port}"
    parameters = {"simulated_reply": REPLY}
    return Setup(
        gateway.server, None, _http_jobs(lambda n: WebSocketStreamChatLoad(base_url, gateway.api_key, n, parameters))
    )


def _setup_openai_adapter(ctx: Context, stack: contextlib.ExitStack, workers: int = 1) -> Setup:
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    gateway = start_gateway(ctx.log_dir, emulator=emulator, workers=workers)
    stack.callback(gateway.stop)
    config = LoadConfig(
        target=gateway.target,
        metadata=gateway.metadata,
        provider="openai",
        model="gpt-4o-mini",
        credential={"key": "sk-bench"},
    )
    return Setup(gateway.server, emulator, _grpc_jobs(config))


def _setup_sdk(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    base_url = emulator_base_url(emulator)
    return Setup(emulator, None, _http_jobs(lambda n: OpenAISDKLoad(base_url, n)))


def _setup_aiohttp(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    base_url = emulator_base_url(emulator)
    return Setup(emulator, None, _http_jobs(lambda n: AiohttpLoad(base_url, n)))


def _setup_litellm(ctx: Context, stack: contextlib.ExitStack) -> Setup | None:
    if peers.litellm_executable() is None:
        ctx.notes.append(f"(e) skipped: LiteLLM is not installed; `make bench-peers` installs it ({peers.VENV}).")
        return None
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    proxy, master_key = peers.start_litellm(ctx.log_dir, emulator_base_url(emulator))
    _stopping(stack, proxy)
    base_url = f"http://127.0.0.1:{proxy.port}/v1"
    return Setup(proxy, emulator, _http_jobs(lambda n: OpenAISDKLoad(base_url, n, api_key=master_key)))


def _setup_openai_endpoint(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    """(f): the gateway's OpenAI-compatible HTTP endpoint -> its OpenAI adapter -> the emulator, driven by the same
    openai SDK load as (e)."""
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    gateway = start_gateway(ctx.log_dir, emulator=emulator, http=True)
    stack.callback(gateway.stop)
    base_url = f"http://127.0.0.1:{gateway.http_port}/v1"
    headers = (("X-Provider-Key", "sk-bench"),)

    def load(n: int) -> LoadJob:
        return OpenAISDKLoad(base_url, n, model="openai/gpt-4o-mini", api_key=gateway.api_key, headers=headers)

    return Setup(gateway.server, emulator, _http_jobs(load))


def _setup_passthrough(ctx: Context, stack: contextlib.ExitStack) -> Setup:
    """(g): a bare ASGI pass-through proxy (bench/asgi_passthrough.py) on the same stack, to the same emulator."""
    emulator = _stopping(stack, start_emulator(ctx.log_dir, WORDS))
    proxy = _stopping(stack, start_passthrough(ctx.log_dir, emulator_base_url(emulator)))
    base_url = f"http://127.0.0.1:{proxy.port}/v1"
    return Setup(proxy, emulator, _http_jobs(lambda n: OpenAISDKLoad(base_url, n)))


def _setup_session_turns(
    ctx: Context, stack: contextlib.ExitStack, *, on_session: bool, redis: bool = False
) -> Setup | None:
    """(s0) stateless requests carrying the history, (s) the same turns on sessions (SQLite), (sr) on Redis."""
    redis_url = None
    if redis:
        missing = sessions.redis_available()
        if missing is not None:
            ctx.notes.append(f"(sr) skipped: {missing}.")
            return None
        redis_url = sessions.REDIS_URL
    gateway = start_gateway(ctx.log_dir, settings=sessions.session_settings(redis_url))
    stack.callback(gateway.stop)
    if on_session:
        label = "(sr) Redis" if redis else "(s) SQLite"

        def note_memory() -> None:
            measured = (
                sessions.redis_bytes_per_session() if redis else sessions.sqlite_bytes_per_session(gateway.data_dir)
            )
            ctx.notes.append(f"{label} memory per stored session: {measured}.")

        stack.callback(note_memory)  # runs before the gateway stops (callbacks run last-in first-out)
    config = LoadConfig(target=gateway.target, metadata=gateway.metadata, parameters={"simulated_reply": REPLY})
    return Setup(gateway.server, None, sessions.jobs(config, on_session))


def _setup_route(ctx: Context, stack: contextlib.ExitStack, *, hedged: bool) -> Setup:
    """(r) a route of one simulated target; (h) a hedged route whose first target is slow (``bench.routing``)."""
    settings = routing.hedged_settings() if hedged else routing.one_target_settings()
    gateway = start_gateway(ctx.log_dir, settings=settings)
    stack.callback(gateway.stop)
    config = LoadConfig(
        target=gateway.target,
        metadata=gateway.metadata,
        provider="route:hedged" if hedged else "route:one",
        parameters={"simulated_reply": REPLY},
    )
    return Setup(gateway.server, None, _grpc_jobs(config))


def _two_workers(setup: Callable[..., Setup]) -> Callable[[Context, contextlib.ExitStack], Setup]:
    """The same gateway scenario with `integration-api serve --workers 2` (one port, SO_REUSEPORT)."""
    return functools.partial(setup, workers=2)


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("a", "bare grpc.aio echo", (1, 50), _setup_echo, interleaved=True),
        Scenario("b", "gateway, simulated provider", (1, 50), _setup_simulated, interleaved=True),
        Scenario("c", "gateway, OpenAI adapter -> emulator", (1, 50), _setup_openai_adapter),
        Scenario(
            "b2", "gateway --workers 2, simulated provider", (50,), functools.partial(_setup_simulated, workers=2)
        ),
        Scenario(
            "c2", "gateway --workers 2, OpenAI adapter", (50,), functools.partial(_setup_openai_adapter, workers=2)
        ),
        Scenario(
            "o",
            "gateway, simulated provider, metrics scraped + OTLP tracing on",
            (1, 50),
            _setup_observed,
            interleaved=True,
        ),
        Scenario("w", "bridge WebSocket StreamChat, simulated provider", (1, 50), _setup_bridge),
        Scenario(
            "p",
            "gateway, simulated provider, key and project limits (in-process)",
            (1, 50),
            _setup_policy,
            interleaved=True,
        ),
        Scenario(
            "pr",
            "gateway, simulated provider, key and project limits (Redis)",
            (1, 50),
            functools.partial(_setup_policy, redis=True),
            interleaved=True,
        ),
        Scenario(
            "s0",
            "gateway, stateless request with a 10-message history",
            (1, 50),
            functools.partial(_setup_session_turns, on_session=False),
            interleaved=True,
        ),
        Scenario(
            "s",
            "gateway, session turn (SQLite store)",
            (1, 50),
            functools.partial(_setup_session_turns, on_session=True),
            interleaved=True,
        ),
        Scenario(
            "sr",
            "gateway, session turn (Redis store)",
            (1, 50),
            functools.partial(_setup_session_turns, on_session=True, redis=True),
            interleaved=True,
        ),
        Scenario(
            "r",
            "gateway, route of one simulated target",
            (1, 50),
            functools.partial(_setup_route, hedged=False),
            interleaved=True,
        ),
        Scenario(
            "h",
            "gateway, hedged route: first token 500 ms, hedge after 100 ms",
            (1,),
            functools.partial(_setup_route, hedged=True),
        ),
        Scenario("d", "openai SDK -> emulator", (1, 50), _setup_sdk),
        Scenario("d2", "aiohttp -> emulator", (1,), _setup_aiohttp),
        Scenario("e", "LiteLLM proxy -> emulator", (1, 50), _setup_litellm),
        Scenario("f", "gateway OpenAI-compatible HTTP -> OpenAI adapter -> emulator", (1, 50), _setup_openai_endpoint),
        Scenario("g", "bare ASGI pass-through proxy -> emulator", (1, 50), _setup_passthrough),
    )
}


def client_processes(streams: int, timing: Timing) -> int:
    """Load generator processes at `streams`: one for one stream, `timing.clients` for more."""
    return 1 if streams == 1 else min(timing.clients, streams)


def measure(scenario: Scenario, setup: Setup, streams: int, timing: Timing) -> dict[str, Any]:
    """One row of the results: the load at `streams` concurrent streams, measured in one window."""
    processes = client_processes(streams, timing)
    servers = {"server": setup.measured, "upstream": setup.upstream}
    marks: dict[str, dict[str, float]] = {}

    def on_mark(name: str) -> None:
        marks[name] = {role: s.cpu_seconds() for role, s in servers.items() if s is not None}
        marks[name]["machine"] = machine_busy_seconds()
        marks[name]["steal"] = steal_seconds()

    stats = run_processes(setup.jobs(streams, processes), timing.warmup_s, timing.duration_s, on_mark=on_mark)
    for server in servers.values():
        if server is not None:
            server.check_alive()
    summary = stats.summary()
    attempts = max(summary["requests"] + summary["error_count"], 1)
    row: dict[str, Any] = {
        "scenario": scenario.key,
        "title": scenario.title,
        "streams": streams,
        "client_processes": processes,
        **summary,
    }
    start, end = marks.get("start", {}), marks.get("end", {})
    accounted = summary["client_cpu_s"]
    row["client_cpu_percent"] = 100 * accounted / summary["elapsed_s"]
    for role in ("server", "upstream"):
        if role in start and role in end:
            used = end[role] - start[role]
            accounted += used
            row[f"{role}_cpu_us_per_request"] = 1e6 * used / attempts
            row[f"{role}_cpu_percent"] = 100 * used / summary["elapsed_s"]
    if "machine" in start and "machine" in end:
        # CPU the machine spent on anything but this measurement: other work skews the figures.
        other = end["machine"] - start["machine"] - accounted
        row["other_cpu_percent"] = max(0.0, 100 * other / summary["elapsed_s"])
    if "steal" in start and "steal" in end:
        # CPU the hypervisor gave to other guests while this VM's CPUs were ready to run: a noisy host, not this
        # machine's work, and it lowers every figure of the window.
        row["steal_cpu_percent"] = max(0.0, 100 * (end["steal"] - start["steal"]) / summary["elapsed_s"])
    return row


def run_round(scenarios: list[Scenario], ctx: Context, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every scenario's servers started at once, then each level measured (every level-1 row, then every
    level-50 row), then every server stopped.

    At a level, the scenarios marked `interleaved` are measured together in turns (``bench.interleave``: each
    samples the same seconds of the machine), then every other scenario in its own window, one after the other:
    so the two rows of any ratio are measured close together, not a whole pass of the scenarios apart (on a
    shared VM, CPU stolen by other guests comes in bursts of tens of seconds). Idle servers cost next to nothing
    meanwhile (the "other CPU %" column shows it). A scenario that fails becomes a note.
    """
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        ready: list[tuple[Scenario, Setup]] = []
        for scenario in scenarios:
            try:
                setup = scenario.setup(ctx, stack)
            except (RuntimeError, TimeoutError, OSError) as exc:
                _note_failure(ctx, log, f"({scenario.key})", exc)
                continue
            if setup is not None:
                ready.append((scenario, setup))
        failed: set[str] = set()
        for streams in sorted({level for scenario, _ in ready for level in scenario.levels}):
            turns = [
                (scenario, setup) for scenario, setup in ready if scenario.interleaved and streams in scenario.levels
            ]
            if len(turns) > 1:
                rows.extend(_measure_interleaved(turns, streams, ctx, log, failed))
            else:
                turns = []  # turns need company: a lone scenario is measured in its own window
            taking_turns = {scenario.key for scenario, _ in turns}
            for scenario, setup in ready:
                if streams not in scenario.levels or scenario.key in failed or scenario.key in taking_turns:
                    continue
                log(f"({scenario.key}) {scenario.title}: {streams} stream(s)")
                try:
                    rows.append(measure(scenario, setup, streams, ctx.timing))
                except (RuntimeError, TimeoutError, OSError) as exc:
                    failed.add(scenario.key)
                    _note_failure(ctx, log, f"({scenario.key})", exc)
    return rows


def _note_failure(ctx: Context, log: Callable[[str], None], what: str, exc: Exception) -> None:
    ctx.notes.append(f"{what} failed: {exc}")
    log(f"{what} failed: {exc}")


def _measure_interleaved(
    turns: list[tuple[Scenario, Setup]],
    streams: int,
    ctx: Context,
    log: Callable[[str], None],
    failed: set[str],
) -> list[dict[str, Any]]:
    """The rows of `turns` at `streams`, measured together, in turns (``bench.interleave``)."""
    keys = ", ".join(f"({scenario.key})" for scenario, _ in turns)
    log(f"{keys}: {streams} stream(s), in turns")
    processes = client_processes(streams, ctx.timing)
    lanes = [
        interleave.Lane(
            scenario.key,
            tuple(setup.jobs(streams, processes)),
            setup.measured.pid,
            None if setup.upstream is None else setup.upstream.pid,
        )
        for scenario, setup in turns
    ]
    try:
        measured = interleave.measure(lanes, streams, ctx.timing.duration_s)
        for _, setup in turns:
            setup.measured.check_alive()
    except (RuntimeError, TimeoutError, OSError) as exc:
        failed.update(scenario.key for scenario, _ in turns)
        _note_failure(ctx, log, f"{keys} interleaved", exc)
        return []
    return [{"scenario": scenario.key, "title": scenario.title, **measured[scenario.key]} for scenario, _ in turns]
