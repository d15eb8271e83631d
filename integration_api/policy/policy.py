"""`Policy`: the server's one place that decides whether a request may run (scope, rate limits, budgets).

Built once per server (``ServerState``) and asked by `PolicyLayer` for every request. `admit` checks the key's and
the project's scope, then acquires every limit that applies in one limiter call (all or nothing):

- the key's own limits (its `KeyScope`: rpm, tpm, max_concurrent), for API keys;
- the project's limits and budgets (``auth.projects``, read from the key store every `PROJECTS_REFRESH_S`), for
  every principal of that project, service JWTs included.

Tokens are reserved from an estimate at the start (characters / 4 of the input, plus ``model.max_tokens`` or
`rate_limit_output_tokens` for a chat's reply) and settled at the end with the real usage (`Lease.finish`); a
request that ends without usage (failed, cancelled) is settled with its input estimate plus the output it
streamed (characters / 4), or nothing if it produced no output (vendors do not bill failed calls). A cost
reservation uses the price table (``prices``) the same way.

Where the counts live is the limiter's business: this process (`LocalLimiter`, lost on restart) or Redis
(``redis_limiter``, shared by replicas, kept across restarts) when `redis_url` is set.
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from auth.principal import KeyScope, Principal
from auth.projects import Budget, ProjectRecord, ProjectStore
from integration_api.errors import ResourceExhausted
from integration_api.policy.limits import ConcurrencyRule, Limiter, LocalLimiter, QuotaRule, RateRule, Refusal, Rule
from integration_api.policy.prices import NANO_USD, PriceTable
from integration_api.policy.scope import check_scope
from integration_api.settings import Settings
from providers.types import Usage

logger = logging.getLogger(__name__)

PROJECTS_REFRESH_S = 10.0
MINUTE_S = 60.0
Unit = Literal["requests", "tokens", "usd", "slots"]


def estimate_tokens(characters: int) -> int:
    return math.ceil(characters / 4)


class ProjectDirectory:
    """Every project row, read at once and re-read every `refresh_s` in the background (the hot path never waits
    for SQLite after the first read)."""

    def __init__(self, store: ProjectStore | None, refresh_s: float = PROJECTS_REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._rows: dict[tuple[str, str], ProjectRecord] | None = None
        self._read_at = -math.inf
        self._refreshing: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self._store is not None
        try:
            rows = await asyncio.to_thread(self._store.list)
        except Exception:  # a broken read keeps the last rows: limits must not vanish with a busy file
            logger.exception("could not read the project rows from %s; keeping the last ones", self._store.path)
            if self._rows is None:
                self._rows = {}
        else:
            self._rows = {(row.organization_id, row.project_id): row for row in rows}
        self._read_at = time.monotonic()

    async def get(self, organization_id: str, project_id: str) -> ProjectRecord | None:
        if self._store is None:
            return None
        if self._rows is None:
            if self._refreshing is None:
                self._refreshing = asyncio.create_task(self._read())
            await asyncio.shield(self._refreshing)
        elif time.monotonic() - self._read_at > self._refresh_s and (
            self._refreshing is None or self._refreshing.done()
        ):
            self._refreshing = asyncio.create_task(self._read())
        assert self._rows is not None
        return self._rows.get((organization_id, project_id))

    def invalidate(self) -> None:
        """Read the rows again at the next request (after `projects set` through this process, and in tests)."""
        self._rows = None
        self._refreshing = None

    async def aclose(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.gather(self._refreshing, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request is expected to use, reserved at its start."""

    input_tokens: int
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _window(period: Literal["day", "month"], now: float) -> tuple[str, float]:
    """(the id of the UTC calendar period holding `now`, when it ends)."""
    return _window_of_day(period, int(now // 86_400))


@functools.lru_cache(maxsize=64)
def _window_of_day(period: Literal["day", "month"], day: int) -> tuple[str, float]:
    """`_window` for a UTC day (days since the epoch): the same for every request of that day, so computed once."""
    moment = datetime.fromtimestamp(day * 86_400.0, UTC)
    if period == "day":
        start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        return start.strftime("%Y-%m-%d"), start.timestamp() + 86_400.0
    days = calendar.monthrange(moment.year, moment.month)[1]
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    return start.strftime("%Y-%m"), start.timestamp() + days * 86_400.0


class Lease:
    """One admitted request's hold on its limits; `finish` settles it (exactly once)."""

    __slots__ = ("_estimate", "_finished", "_id", "_model", "_policy", "_provider", "_rules", "_units")

    def __init__(
        self,
        policy: Policy,
        rules: Sequence[Rule],
        units: Sequence[Unit],
        estimate: Estimate,
        provider: str,
        model: str,
        lease_id: str,
    ) -> None:
        self._policy, self._rules, self._units = policy, rules, units
        self._estimate, self._provider, self._model, self._id = estimate, provider, model, lease_id
        self._finished = False

    def finish(self, usage: Usage | None, output_characters: int = 0) -> None:
        """Settle with the real `usage`, or without it (failed, cancelled) from the output seen so far."""
        if self._finished or not self._rules:
            return
        self._finished = True
        if usage is None:
            output = estimate_tokens(output_characters)
            usage = Usage(self._estimate.input_tokens, output) if output else Usage()
        deltas = [self._delta(rule, unit, usage) for rule, unit in zip(self._rules, self._units, strict=True)]
        self._policy.settle(self._rules, deltas, self._id)

    def _delta(self, rule: Rule, unit: Unit, usage: Usage) -> int:
        if isinstance(rule, ConcurrencyRule) or unit == "requests":
            return 0
        if unit == "tokens":
            return usage.total_tokens - rule.cost
        return self._policy.prices.cost_nano_usd(self._provider, self._model, usage) - rule.cost


class Policy:
    """Scopes, limits and budgets of every request of one server. `clock` (seconds since the epoch: periods are
    calendar days and months, and replicas compare times) is injectable so that tests move time."""

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: Limiter | None = None,
        projects: ProjectDirectory | None = None,
        prices: PriceTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limiter = limiter if limiter is not None else open_limiter(settings)
        self.projects = projects if projects is not None else ProjectDirectory(ProjectStore(settings.data_dir))
        self.prices = prices if prices is not None else PriceTable.load(settings.price_table_file)
        self.output_tokens_estimate = settings.rate_limit_output_tokens
        self.clock = clock
        self._local = self.limiter if isinstance(self.limiter, LocalLimiter) else None
        self._settling: set[asyncio.Task[None]] = set()

    async def admit(
        self, principal: Principal, provider: str, model: str, uses_model: bool, estimate: Estimate
    ) -> Lease:
        """The request's lease; raises PermissionDenied (scope) or ResourceExhausted (a limit, a budget)."""
        now = self.clock()
        project = await self._scoped_project(principal, provider, model, uses_model, now)
        project_name = _project_name(principal)
        rules: list[Rule] = []
        units: list[Unit] = []
        if principal.key_id is not None and principal.scope is not None:
            _limits(principal.scope, f"k:{principal.key_id}", f"key {principal.key_id}", estimate, rules, units)
        if project is not None:
            owner = f"{principal.organization_id}\x1f{principal.project_id}"
            _limits(project.scope, f"p:{owner}", project_name, estimate, rules, units)
            for budget in project.budgets:
                self._budget(budget, owner, project_name, provider, model, estimate, now, rules, units)
        lease_id = secrets.token_hex(8)
        if rules:
            refusal = (
                self._local.acquire_now(rules, lease_id, now)
                if self._local is not None
                else await self.limiter.acquire(rules, lease_id, now)
            )
            if refusal is not None:
                raise _refused(refusal)
        return Lease(self, rules, units, estimate, provider, model, lease_id)

    async def check_scopes(self, principal: Principal, provider: str, model: str) -> None:
        """PermissionDenied when the key's or its project's scope refuses `provider`, or `model` when one is named
        (CreateSession: a session no request could use is refused when it is made)."""
        await self._scoped_project(principal, provider, model, bool(model), self.clock())

    async def _scoped_project(
        self, principal: Principal, provider: str, model: str, uses_model: bool, now: float
    ) -> ProjectRecord | None:
        """The principal's project row, once the key's scope and the row's allow the request."""
        moment = datetime.fromtimestamp(now, UTC)
        check_scope(principal.scope, "this key", provider, model, uses_model, moment)
        project = await self.projects.get(principal.organization_id, principal.project_id)
        if project is not None:
            check_scope(project.scope, _project_name(principal), provider, model, uses_model, moment)
        return project

    def _budget(
        self,
        budget: Budget,
        owner: str,
        project_name: str,
        provider: str,
        model: str,
        estimate: Estimate,
        now: float,
        rules: list[Rule],
        units: list[Unit],
    ) -> None:
        period_id, resets_at = _window(budget.period, now)
        usage = Usage(estimate.input_tokens, estimate.output_tokens)
        if budget.unit == "tokens":
            limit, cost = int(budget.limit), estimate.tokens
        else:
            limit, cost = round(budget.limit * NANO_USD), self.prices.cost_nano_usd(provider, model, usage)
        key = f"b:{owner}:{budget.period}:{period_id}:{budget.unit}"
        rules.append(QuotaRule(key, limit, cost, resets_at, _budget_name(project_name, budget)))
        units.append(budget.unit)

    def settle(self, rules: Sequence[Rule], deltas: Sequence[int], lease_id: str) -> None:
        """Apply a lease's settlement: at once in-process; in the background (shielded from the request's
        cancellation, which must not leak a concurrency slot) with Redis."""
        now = self.clock()
        if self._local is not None:
            self._local.settle_now(rules, deltas, lease_id, now)
            return
        task = asyncio.get_running_loop().create_task(self.limiter.settle(rules, deltas, lease_id, now))
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("a rate-limit settlement failed: %r", task.exception())

    async def drain(self) -> None:
        """Wait for the settlements in flight (tests, and shutdown)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.projects.aclose()
        await self.limiter.aclose()


def _project_name(principal: Principal) -> str:
    return f"project {principal.organization_id}/{principal.project_id}"


@functools.lru_cache(maxsize=1024)
def _budget_name(project_name: str, budget: Budget) -> str:
    return f"{project_name} {budget.name} ({budget.describe()})"


@dataclass(frozen=True, slots=True)
class _ScopeRules:
    """The rules of one scope that are the same for every request (all but the tokens rule's cost)."""

    rpm: RateRule | None
    tpm: RateRule | None  # cost 0: each request's is its estimate
    concurrent: ConcurrencyRule | None


@functools.lru_cache(maxsize=4096)
def _scope_rules(scope: KeyScope, key: str, name: str) -> _ScopeRules:
    rpm, tpm, limit = scope.rpm, scope.tpm, scope.max_concurrent
    return _ScopeRules(
        None if rpm is None else RateRule(f"{key}:rpm", rpm, MINUTE_S, 1, f"{name} requests per minute ({rpm})"),
        None if tpm is None else RateRule(f"{key}:tpm", tpm, MINUTE_S, 0, f"{name} tokens per minute ({tpm})"),
        None if limit is None else ConcurrencyRule(f"{key}:conc", limit, f"{name} concurrent requests ({limit})"),
    )


def _limits(scope: KeyScope, key: str, name: str, estimate: Estimate, rules: list[Rule], units: list[Unit]) -> None:
    static = _scope_rules(scope, key, name)
    if static.rpm is not None:
        rules.append(static.rpm)
        units.append("requests")
    if static.tpm is not None:
        # A reservation above the whole minute's allowance could never be admitted: reserve at most that much
        # (the settlement charges the rest, delaying the next requests).
        tpm = static.tpm
        rules.append(RateRule(tpm.key, tpm.limit, tpm.period_s, min(estimate.tokens, tpm.limit), tpm.name))
        units.append("tokens")
    if static.concurrent is not None:
        rules.append(static.concurrent)
        units.append("slots")


def _refused(refusal: Refusal) -> ResourceExhausted:
    rule, wait = refusal.rule, refusal.retry_after_s
    if isinstance(rule, QuotaRule):
        resets = datetime.fromtimestamp(rule.resets_at, UTC).isoformat(timespec="seconds")
        return ResourceExhausted(
            f"{rule.name} is spent; it resets at {resets}",
            human_message="The project's budget for this period is spent.",
            retry_after=wait,
        )
    return ResourceExhausted(
        f"rate limit reached: {rule.name}; retry in {wait:.2f} s",
        human_message="A rate limit of this key or project was reached; try again shortly.",
        retry_after=wait,
    )


def open_limiter(settings: Settings) -> Limiter:
    """Redis (shared by replicas, `rate_limit_fail_mode` while it is down) when `redis_url` is set, else local."""
    if settings.redis_url is None:
        return LocalLimiter()
    from integration_api.policy.redis_limiter import FailoverLimiter, RedisLimiter  # only Redis users import it

    return FailoverLimiter(RedisLimiter(settings.redis_url.get_secret_value()), settings.rate_limit_fail_mode)
