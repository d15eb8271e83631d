"""The router: each route's targets, breakers and hedge budget (per process), and the provider a route request gets.

`RouteProvider.stream_chat` tries the route's targets in the order `targets.plan` gives:

- a target whose circuit is open, or which is at its `max_concurrent`, is skipped without a network call;
- **fallback**: a failure before the target's first event moves on to the next target when it is retryable
  (429, 5xx, 529, timeouts, lost connections) or listed in `fallback_on`; any other failure is the request's.
  Once a target has produced an event it is the request's only target: a later failure is the request's one
  error frame, so a reply never mixes text from two models;
- **hedging** (`hedge_after_ms`): when the first target has not produced its first event by then, and the
  route's hedge budget allows, the next target starts too. Each racing target runs in its own task (its
  generator is only ever iterated by that task, so the SDK's timeouts and cancel scopes stay where they were
  entered); the first to produce an event wins, every other is cancelled at once (its task, hence its
  generator, hence its upstream connection, is closed), and only the winner's events are passed on;
- the final event names the target that served the request (`ChatFinished.served_by`, which becomes the
  final frame's `servedBy` and `SERVED_BY` metric), as does `RequestStats.served_by` (the usage record's).

When every target failed, the request fails with the last target's error; when none could even be tried, with
UNAVAILABLE (every circuit open, with the time until the first half-opens as retry-after) or RESOURCE_EXHAUSTED
(every target at its cap). The pipeline's resilience layer, outside the route, may then retry the route as a
whole, and its first-token and idle timeouts bound the route's reply like any adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from integration_api.errors import DeadlineExceeded, GatewayError, Internal, ResourceExhausted, Unavailable
from integration_api.routing.breaker import BreakerState, CircuitBreaker, Clock, HedgeBudget
from integration_api.routing.config import ROUTE_PREFIX, RouteConfig
from integration_api.routing.targets import BreakerKey, Target, TargetBuilder, make_targets, plan, target_call
from providers.base import ChatStream, CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.types import ChatCall, ChatEvent, ChatFinished

if TYPE_CHECKING:
    from integration_api.context import RequestContext

# Records one attempt at a target ("provider/model") that did not serve its request, and why.
AttemptRecorder = Callable[["RequestContext", str, BaseException], None]

MAX_BREAKERS = 4096  # distinct deployments remembered (targets using callers' own credentials make more)
ROUTE_RPCS = frozenset({"Chat", "StreamChat"})
BUSY_RETRY_AFTER_S = 1.0


@dataclass(slots=True, eq=False)
class Route:
    name: str
    config: RouteConfig
    targets: list[Target]
    budget: HedgeBudget

    @property
    def provider_name(self) -> str:
        return f"{ROUTE_PREFIX}{self.name}"

    def falls_back(self, error: GatewayError) -> bool:
        """Whether a target's failure before its first event moves the request on to the next target."""
        if error.retryable:
            return True
        extra = self.config.fallback_on
        return error.status in extra or (error.upstream_status or error.http_status) in extra


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    provider: str
    model: str
    rank: int
    weight: float
    breaker: BreakerState
    in_flight: int
    max_concurrent: int
    attempts: int
    failures: int
    first_token_ms: float


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    name: str
    balance: str
    hedge_after_ms: float
    targets: tuple[TargetSnapshot, ...]


class Router:
    """Every route of the server, and what this process knows of their targets. `clock` and `rng` may be replaced
    (tests: a fake clock, a seeded generator)."""

    def __init__(
        self,
        routes: Mapping[str, RouteConfig],
        builder: TargetBuilder,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.builder = builder
        self.clock = clock
        self.rng = rng or random.Random()
        # Told of every attempt that did not serve its request (the gateway writes them to the usage log).
        self.record_attempt: AttemptRecorder | None = None
        self.routes: dict[str, Route] = {}
        self._breakers: dict[BreakerKey, CircuitBreaker] = {}
        for name, config in sorted(routes.items()):
            for index, target in enumerate(config.targets):
                try:
                    builder.check(target)
                except ValueError as exc:
                    raise ValueError(f"route {name!r}, target {index}: {exc}") from exc
            budget = HedgeBudget(config.hedge_budget_percent, config.hedge_budget_window_s, self._now)
            self.routes[name] = Route(name, config, make_targets(name, config.targets), budget)

    def _now(self) -> float:
        return self.clock()  # looked up at each call, so a replaced clock applies to existing budgets too

    def specs(self) -> Iterator[ProviderSpec]:
        """One provider spec per route, named "route:NAME", for the registry."""
        for route in self.routes.values():

            def factory(credential: CredentialValue, env: ProviderEnv, route: Route = route) -> Provider:
                return RouteProvider(self, route, credential, env)

            description = f"route {route.name}: " + ", ".join(t.label for t in route.targets)
            yield ProviderSpec(route.provider_name, factory, ROUTE_RPCS, description)

    def breaker(self, key: BreakerKey, route: Route) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            if len(self._breakers) >= MAX_BREAKERS:
                # Forget the oldest closed ones: they hold nothing but counts.
                for old in [k for k, b in self._breakers.items() if b.state is BreakerState.CLOSED][
                    : MAX_BREAKERS // 4
                ]:
                    del self._breakers[old]
            breaker = self._breakers[key] = CircuitBreaker(route.config.breaker, self._now)
        return breaker

    def snapshot(self) -> list[RouteSnapshot]:
        routes = []
        for route in self.routes.values():
            targets = []
            for t in route.targets:
                breaker = self._breakers.get(t.last_key) if t.last_key is not None else None
                state = breaker.state if breaker is not None else BreakerState.CLOSED
                targets.append(
                    TargetSnapshot(
                        t.config.provider,
                        t.config.model,
                        t.rank,
                        t.config.weight,
                        state,
                        t.in_flight,
                        t.config.max_concurrent,
                        t.attempts,
                        t.failures,
                        t.first_token_ms,
                    )
                )
            routes.append(
                RouteSnapshot(route.name, route.config.balance, route.config.hedge_after_ms or 0, tuple(targets))
            )
        return routes


class _Attempt:
    """One target serving (or trying to serve) one request: its stream, its breaker permit, its counters."""

    def __init__(self, target: Target, breaker: CircuitBreaker, probe: bool, events: ChatStream) -> None:
        self.target = target
        self.breaker = breaker
        self.probe = probe
        self.events = events
        self.settled = False  # the breaker has heard how it went
        self._started = time.perf_counter()
        self._closed = False
        target.in_flight += 1
        target.attempts += 1

    async def first(self, timeout_s: float | None) -> ChatEvent:
        """The target's first event, within `timeout_s`; a failure is settled with the breaker before it is raised."""
        try:
            async with asyncio.timeout(timeout_s):
                event = await anext(self.events)
        except TimeoutError as exc:
            late = DeadlineExceeded(f"route target {self.target.label} sent nothing within {timeout_s:g} s")
            self.failed(late)
            raise late from exc
        except StopAsyncIteration as exc:
            raise Internal(f"route target {self.target.label} ended its stream without a response") from exc
        except GatewayError as error:
            self.failed(error)
            raise
        self.target.record_first_token(time.perf_counter() - self._started)
        self.settled = True
        self.breaker.success(self.probe)
        return event

    def failed(self, error: GatewayError) -> None:
        """Tell the breaker: only retryable failures say the deployment is unwell (see ``routing.breaker``)."""
        if error.retryable:
            self.target.failures += 1
            self.breaker.failure(self.probe and not self.settled)
        elif not self.settled:
            self.breaker.abandon(self.probe)
        self.settled = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.target.in_flight -= 1
        if not self.settled:
            self.settled = True
            self.breaker.abandon(self.probe)
        with contextlib.suppress(GatewayError):  # a failure while closing changes nothing the client sees
            await self.events.aclose()


_END = object()


@dataclass(eq=False)
class _Racer:
    """A target racing for the first event in its own task; the winner's later events come through `queue`."""

    attempt: _Attempt
    task: asyncio.Task[None] | None = None
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(maxsize=1))
    lost: bool = False


class _Outcome:
    """What the tries of one request came to, for the error when no target served it."""

    def __init__(self, route: Route, record: AttemptRecorder | None = None, context: RequestContext | None = None):
        self.route = route
        self._record = record
        self._context = context
        self.last: GatewayError | None = None
        self.open_retry_after: float | None = None
        self.busy = False

    def fell_back(self, target: Target, error: GatewayError) -> None:
        """`target` failed before its first event and the request moves on: that attempt is one usage record."""
        self.last = error
        self.abandoned(target, error)

    def abandoned(self, target: Target, error: BaseException) -> None:
        """An attempt that will not serve the request (it failed, or it lost a hedge race: CancelledError)."""
        if self._record is not None and self._context is not None:
            self._record(self._context, target.label, error)

    def error(self) -> GatewayError:
        if self.last is not None:
            return self.last
        name = self.route.name
        if self.open_retry_after is not None:
            return Unavailable(
                f"every target of route {name!r} is unavailable (circuit open)", retry_after=self.open_retry_after
            )
        if self.busy:
            return ResourceExhausted(
                f"every target of route {name!r} is at its max_concurrent", retry_after=BUSY_RETRY_AFTER_S
            )
        return Unavailable(f"route {name!r} has no target to try")  # pragma: no cover - a route has targets


class RouteProvider(Provider):
    """A route, as the provider of one request (built by the route's `ProviderSpec` inside the pipeline)."""

    def __init__(self, router: Router, route: Route, credential: CredentialValue, env: ProviderEnv) -> None:
        self.name = route.provider_name
        self._router = router
        self._route = route
        self._credential = credential
        self._env = env

    def _open_next(
        self, candidates: deque[Target], call: ChatCall, outcome: _Outcome
    ) -> tuple[_Attempt, ChatCall] | None:
        """Start the next target that may be tried, or None when none is left."""
        while candidates:
            target = candidates.popleft()
            if target.full:
                outcome.busy = True
                continue
            try:
                built = self._router.builder.build(target, self._credential, self._env)
            except GatewayError as error:
                if not self._route.falls_back(error):
                    raise
                outcome.fell_back(target, error)
                continue
            target.last_key = built.key
            breaker = self._router.breaker(built.key, self._route)
            probe = breaker.allow()
            if probe is None:
                wait = breaker.retry_after()
                outcome.open_retry_after = (
                    wait if outcome.open_retry_after is None else min(outcome.open_retry_after, wait)
                )
                continue
            routed = target_call(call, target.config)
            return _Attempt(target, breaker, probe, built.adapter.stream_chat(routed)), routed
        return None

    def _served(self, attempt: _Attempt, event: ChatEvent) -> ChatEvent:
        """The event as the client gets it: only the last one changes (ChatFinished names the target)."""
        if type(event) is ChatFinished:
            return dataclasses.replace(event, served_by=attempt.target.label)
        return event

    async def stream_chat(self, call: ChatCall) -> ChatStream:
        if self._env.context is None:
            raise Internal("a route serves requests only")
        route = self._route
        if route.config.hedge_after_ms is not None:
            route.budget.request()  # the hedge budget counts a hedging route's requests
        candidates = deque(plan(route.targets, route.config.balance, self._router.rng))
        outcome = _Outcome(route, self._router.record_attempt, self._env.context)
        timeout_s = route.config.first_token_timeout_ms / 1000.0 if route.config.first_token_timeout_ms else None
        if route.config.hedge_after_ms is None or len(candidates) < 2:
            attempt, first = await self._in_turn(candidates, call, outcome, timeout_s)
            self._env.context.stats.served_by = attempt.target.label
            try:
                yield self._served(attempt, first)
                async for event in attempt.events:
                    yield self._served(attempt, event)
            except GatewayError as error:
                attempt.failed(error)
                raise
            finally:
                await attempt.close()
            return
        racer, first = await self._race(candidates, call, outcome, timeout_s, route.config.hedge_after_ms / 1000.0)
        self._env.context.stats.served_by = racer.attempt.target.label
        try:
            yield self._served(racer.attempt, first)
            while (item := await racer.queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield self._served(racer.attempt, cast(ChatEvent, item))
        finally:
            await _stop(racer)

    async def _in_turn(
        self, candidates: deque[Target], call: ChatCall, outcome: _Outcome, timeout_s: float | None
    ) -> tuple[_Attempt, ChatEvent]:
        """One target after the other, until one produces its first event."""
        while (opened := self._open_next(candidates, call, outcome)) is not None:
            attempt = opened[0]
            try:
                return attempt, await attempt.first(timeout_s)
            except GatewayError as error:
                await attempt.close()
                if not self._route.falls_back(error):
                    raise
                outcome.fell_back(attempt.target, error)
            except BaseException:
                await attempt.close()
                raise
        raise outcome.error()

    async def _race(
        self, candidates: deque[Target], call: ChatCall, outcome: _Outcome, timeout_s: float | None, hedge_s: float
    ) -> tuple[_Racer, ChatEvent]:
        """Targets in turn, with one more started when the running one is slow to its first event (a hedge)."""
        race = _Race(self, candidates, call, outcome, timeout_s)
        try:
            winner, first = await race.run(hedge_s)
        except BaseException:
            await asyncio.gather(*(_stop(r) for r in race.racers))
            raise
        losers = [r for r in race.racers if r is not winner]
        await asyncio.gather(*(_stop(r) for r in losers))  # at once
        for loser in losers:
            if not loser.lost:  # the failed ones were recorded as they fell back
                outcome.abandoned(loser.attempt.target, asyncio.CancelledError("lost the hedge race"))
        return winner, first


class _Race:
    """The targets of one hedged request racing for the first event (at most one hedge per request)."""

    def __init__(
        self,
        provider: RouteProvider,
        candidates: deque[Target],
        call: ChatCall,
        outcome: _Outcome,
        timeout_s: float | None,
    ) -> None:
        self.provider = provider
        self.candidates = candidates
        self.call = call
        self.outcome = outcome
        self.timeout_s = timeout_s
        self.racers: list[_Racer] = []
        self.arrivals: asyncio.Queue[tuple[_Racer, object]] = asyncio.Queue()

    def start(self) -> bool:
        opened = self.provider._open_next(self.candidates, self.call, self.outcome)
        if opened is None:
            return False
        racer = _Racer(opened[0])
        racer.task = asyncio.ensure_future(_pump(racer, self.arrivals, self.timeout_s))
        self.racers.append(racer)
        return True

    def fall_back(self, racer: _Racer, error: GatewayError) -> bool:
        """A racer failed before its first event: raise it, or True when a fallback target was started."""
        if not self.provider._route.falls_back(error):
            raise error
        self.outcome.fell_back(racer.attempt.target, error)
        if not all(r.lost for r in self.racers):
            return False  # another racer is still running: wait for it
        if not self.start():
            raise self.outcome.error()
        return True

    async def run(self, hedge_s: float) -> tuple[_Racer, ChatEvent]:
        loop = asyncio.get_running_loop()
        if not self.start():
            raise self.outcome.error()
        hedge_at: float | None = loop.time() + hedge_s
        while True:
            wait = max(hedge_at - loop.time(), 0.0) if hedge_at is not None and self.candidates else None
            try:
                async with asyncio.timeout(wait):
                    racer, result = await self.arrivals.get()
            except TimeoutError:
                hedge_at = None  # one hedge per request, and only if the route's budget has room for it
                if self.provider._route.budget.try_hedge():
                    self.start()
                continue
            if isinstance(result, GatewayError):
                racer.lost = True
                if self.fall_back(racer, result) and hedge_at is not None:
                    hedge_at = loop.time() + hedge_s  # the fallback target gets the hedge delay afresh
                continue
            if isinstance(result, BaseException):
                raise result
            return racer, cast(ChatEvent, result)


async def _pump(racer: _Racer, arrivals: asyncio.Queue[tuple[_Racer, object]], timeout_s: float | None) -> None:
    """Run one racing target: report its first event (or failure), then feed the rest to its queue."""
    attempt = racer.attempt
    try:
        try:
            first = await attempt.first(timeout_s)
        except Exception as error:  # a GatewayError, or an adapter's bug: either is the race's to judge
            arrivals.put_nowait((racer, error))
            return
        arrivals.put_nowait((racer, first))
        try:
            async for event in attempt.events:
                await racer.queue.put(event)
        except GatewayError as error:
            attempt.failed(error)
            await racer.queue.put(error)
            return
        except Exception as error:
            await racer.queue.put(error)
            return
        await racer.queue.put(_END)
    finally:
        await attempt.close()


async def _stop(racer: _Racer) -> None:
    """Cancel a racer's task (closing its target's stream, and with it the upstream connection) and wait for it."""
    task = racer.task
    if task is not None:
        task.cancel()
        # asyncio.wait, not `await task`: the task's own CancelledError must not look like this task's.
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: its outcome already reached the race through a queue
    await racer.attempt.close()
