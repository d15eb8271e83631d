"""Project-level policy: the scope, limits and budgets of an organization's project, kept beside the API keys.

A project row (table ``projects`` of the key store's SQLite file, ``auth.api_keys``) applies to every caller
acting for that project: its API keys (on top of each key's own scope) and service JWTs (which carry no scope of
their own). A project without a row is unrestricted. Managed with ``integration-api projects set|list|remove``;
the policy layer (``integration_api.policy``) reads every row at once and refreshes them every few seconds.

Budgets count per calendar day or month in UTC, in tokens (input + output) or in US dollars (from the price
table, ``integration_api.policy.prices``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

from auth.api_keys import DB_FILENAME, connect, migrate, scope_from_json, scope_to_json
from auth.principal import KeyScope

BudgetPeriod = Literal["day", "month"]
BudgetUnit = Literal["tokens", "usd"]
PERIODS: tuple[BudgetPeriod, ...] = ("day", "month")
UNITS: tuple[BudgetUnit, ...] = ("tokens", "usd")


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `limit` tokens or US dollars per UTC calendar `period`."""

    period: BudgetPeriod
    unit: BudgetUnit
    limit: float

    @property
    def name(self) -> str:
        """How messages name it, e.g. ``daily token budget`` or ``monthly usd budget``."""
        adjective = "daily" if self.period == "day" else "monthly"
        return f"{adjective} {'token' if self.unit == 'tokens' else 'usd'} budget"

    def describe(self) -> str:
        amount = f"{int(self.limit):,} tokens" if self.unit == "tokens" else f"${self.limit:,.2f}"
        return f"{amount} per {self.period}"


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    organization_id: str
    project_id: str
    scope: KeyScope = field(default_factory=KeyScope)
    budgets: tuple[Budget, ...] = ()
    updated_at: datetime | None = None

    def describe(self) -> str:
        parts = [] if self.scope.unrestricted else [self.scope.describe()]
        parts.extend(f"{budget.period}_{budget.unit}={budget.limit:g}" for budget in self.budgets)
        return " ".join(parts) or "unrestricted"


def _budgets_to_json(budgets: tuple[Budget, ...]) -> str:
    return json.dumps([{"period": b.period, "unit": b.unit, "limit": b.limit} for b in budgets])


def _budgets_from_json(text: str) -> tuple[Budget, ...]:
    return tuple(
        Budget(cast(BudgetPeriod, item["period"]), cast(BudgetUnit, item["unit"]), float(item["limit"]))
        for item in json.loads(text or "[]")
    )


class ProjectStore:
    """Set, list and remove project rows in ``<data_dir>/api_keys.sqlite3``. Every method blocks."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        migrate(self.path)

    def set(self, record: ProjectRecord) -> ProjectRecord:
        """Create or replace the row of `record`'s project."""
        stored = ProjectRecord(
            record.organization_id, record.project_id, record.scope, record.budgets, datetime.now(UTC)
        )
        assert stored.updated_at is not None
        with connect(self.path) as connection:
            connection.execute(
                "INSERT INTO projects (organization_id, project_id, scope, budgets, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (organization_id, project_id) DO UPDATE SET"
                " scope = excluded.scope, budgets = excluded.budgets, updated_at = excluded.updated_at",
                (
                    stored.organization_id,
                    stored.project_id,
                    scope_to_json(stored.scope),
                    _budgets_to_json(stored.budgets),
                    stored.updated_at.isoformat(timespec="microseconds"),
                ),
            )
        return stored

    def get(self, organization_id: str, project_id: str) -> ProjectRecord | None:
        return next(
            (r for r in self.list() if (r.organization_id, r.project_id) == (organization_id, project_id)), None
        )

    def list(self) -> list[ProjectRecord]:
        with connect(self.path) as connection:
            rows = connection.execute(
                "SELECT organization_id, project_id, scope, budgets, updated_at FROM projects"
                " ORDER BY organization_id, project_id"
            ).fetchall()
        return [
            ProjectRecord(org, project, scope_from_json(scope), _budgets_from_json(budgets), datetime.fromisoformat(at))
            for org, project, scope, budgets, at in rows
        ]

    def remove(self, organization_id: str, project_id: str) -> bool:
        with connect(self.path) as connection:
            cursor = connection.execute(
                "DELETE FROM projects WHERE organization_id = ? AND project_id = ?", (organization_id, project_id)
            )
            return cursor.rowcount == 1
