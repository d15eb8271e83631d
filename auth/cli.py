"""``integration-api keys`` and ``projects``: API keys with their scopes, project-level limits and budgets.

``keys create|update`` take a key's scope: ``--providers``, ``--models``, ``--credentials`` (comma-separated
globs), ``--rpm``, ``--tpm``, ``--max-concurrent``, ``--max-streams`` and ``--expires`` (``30d``, ``12h``, or an
ISO date); ``keys update --clear rpm`` removes one. ``projects set`` gives a project the same scope and limits
(for all its keys and service tokens together) and budgets per UTC day or month, in tokens or US dollars.

Each command finds the key store the way the server does: ``--data-dir``, else ``INTEGRATION_API_DATA_DIR``,
else the ``--config`` file, else ``./data``. Output meant for scripts (a new key, a token) goes to stdout on
a line of its own; notes go to stderr.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from auth.api_keys import ApiKeyRecord, ApiKeyStore
from auth.jwt_tokens import issue_service_token
from auth.principal import KeyScope
from auth.projects import Budget, ProjectRecord, ProjectStore
from integration_api.cli_support import FLAG, load_settings
from integration_api.settings import Settings

keys_app = typer.Typer(help="Create, list and revoke API keys; issue service tokens.", no_args_is_help=True)
projects_app = typer.Typer(help="Set and list project-level scopes, limits and budgets.", no_args_is_help=True)

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the key store lives (env INTEGRATION_API_DATA_DIR).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="A TOML config file, below flags and environment variables in precedence."),
]
COLUMNS = ("id", "name", "org", "project", "created", "revoked", "scope")
OrganizationOption = Annotated[str, typer.Option("--organization", help="The organization id.")]
ProjectOption = Annotated[str, typer.Option("--project", help="The project id.")]
ProvidersOption = Annotated[
    str | None, typer.Option("--providers", help="Allowed providers, comma-separated globs (openai,azure*).")
]
ModelsOption = Annotated[
    str | None, typer.Option("--models", help="Allowed models, comma-separated globs ('gpt-4o*').")
]
CredentialsOption = Annotated[
    str | None, typer.Option("--credentials", help="Stored credentials it may use, comma-separated globs.")
]
RpmOption = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")]
TpmOption = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens (input + output) per minute.")]
ConcurrentOption = Annotated[int | None, typer.Option("--max-concurrent", min=1, help="Requests running at once.")]
StreamsOption = Annotated[int | None, typer.Option("--max-streams", min=1, help="Streams open at once.")]
ExpiresOption = Annotated[
    str | None, typer.Option("--expires", help="Expiry: a duration from now (90m, 12h, 30d, 4w) or an ISO date.")
]
SCOPE_FIELDS = ("providers", "models", "credentials", "rpm", "tpm", "max_concurrent", "max_streams", "expires_at")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _settings(data_dir: Path | None, config: Path | None) -> Settings:
    return load_settings(config, data_dir=data_dir)


def _store(data_dir: Path | None, config: Path | None) -> ApiKeyStore:
    return ApiKeyStore(_settings(data_dir, config).data_dir)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``-style durations from now, or an ISO date or datetime (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now + timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (90m, 12h, 30d, 4w) nor an ISO date (2027-01-31)", param_hint="--expires"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _globs(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


def _scope(
    base: KeyScope,
    providers: str | None,
    models: str | None,
    credentials: str | None,
    rpm: int | None,
    tpm: int | None,
    max_concurrent: int | None,
    max_streams: int | None,
    expires: str | None,
) -> KeyScope:
    """`base` with every given flag replacing its field."""
    changes: dict[str, Any] = {
        "providers": _globs(providers),
        "models": _globs(models),
        "credentials": _globs(credentials),
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrent": max_concurrent,
        "max_streams": max_streams,
        "expires_at": parse_expiry(expires) if expires is not None else None,
    }
    return replace(base, **{name: value for name, value in changes.items() if value is not None})


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def _row(record: ApiKeyRecord) -> tuple[str, ...]:
    return (
        record.key_id,
        record.name,
        record.organization_id,
        record.project_id,
        _time(record.created_at),
        _time(record.revoked_at),
        record.scope.describe(),
    )


def _table(records: list[ApiKeyRecord]) -> Table:
    """For a terminal: a cell too wide for it folds onto more lines, never loses characters to an ellipsis."""
    table = Table(title="API keys")
    for header in COLUMNS:
        table.add_column(header, overflow="fold")
    for record in records:
        table.add_row(*_row(record))
    return table


def _plain(records: list[ApiKeyRecord]) -> str:
    """For a pipe or a file: aligned columns as wide as their widest cell, one key per line."""
    rows = [COLUMNS, *(_row(record) for record in records)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _record_json(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.key_id,
        "name": record.name,
        "organization": record.organization_id,
        "project": record.project_id,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at is not None else None,
        "scope": record.scope.as_dict(),
    }


@keys_app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="A label for the key, e.g. the backend using it.")],
    organization: OrganizationOption,
    project: ProjectOption,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    credentials: CredentialsOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_concurrent: ConcurrentOption = None,
    max_streams: StreamsOption = None,
    expires: ExpiresOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a project API key and print it once: it cannot be shown again. Without scope flags it may use
    every provider and model, unlimited (its project's limits still apply)."""
    scope = _scope(KeyScope(), providers, models, credentials, rpm, tpm, max_concurrent, max_streams, expires)
    store = _store(data_dir, config)
    key, record = store.create(name=name, organization_id=organization, project_id=project, scope=scope)
    typer.echo(f"Created API key {record.key_id} ({name!r}, organization {organization}, project {project}).", err=True)
    typer.echo(f"Scope: {scope.describe()}.", err=True)
    typer.echo(key)
    typer.echo("Store it now: it is shown only this once. Send it as x-api-key metadata.", err=True)


@keys_app.command("list")
def list_keys(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print a JSON list of the keys' records instead.")
    ] = False,
) -> None:
    """List every key (never the secrets), revoked ones included: a table on a terminal, plain columns otherwise."""
    store = _store(data_dir, config)
    records = store.list()
    if as_json:
        typer.echo(json.dumps([_record_json(record) for record in records], indent=2))
    elif not records:
        typer.echo(f"No API keys in {store.path}.")
    elif sys.stdout.isatty():
        Console().print(_table(records))
    else:
        typer.echo(_plain(records))


@keys_app.command()
def update(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")],
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    credentials: CredentialsOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_concurrent: ConcurrentOption = None,
    max_streams: StreamsOption = None,
    expires: ExpiresOption = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", help=f"Remove a restriction (repeatable): one of {', '.join(SCOPE_FIELDS)}."),
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Change a key's scope: given flags replace their field, --clear removes one. Running servers apply it
    within 30 seconds."""
    store = _store(data_dir, config)
    record = store.get(key_id)
    if record is None:
        raise _fail(f"No API key with id {key_id!r}.")
    unknown = sorted(set(clear or ()) - set(SCOPE_FIELDS))
    if unknown:
        raise _fail(f"--clear {unknown[0]}: not a scope field; use one of {', '.join(SCOPE_FIELDS)}.")
    unrestricted = KeyScope()
    cleared: dict[str, Any] = {name: getattr(unrestricted, name) for name in clear or ()}
    scope = _scope(
        replace(record.scope, **cleared), providers, models, credentials, rpm, tpm, max_concurrent, max_streams, expires
    )
    store.update_scope(key_id, scope)
    typer.echo(f"Updated API key {key_id}: {scope.describe()}.")


@keys_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")],
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a key; running servers stop accepting it within 30 seconds."""
    store = _store(data_dir, config)
    if store.revoke(key_id):
        typer.echo(f"Revoked API key {key_id}.")
        return
    record = store.get(key_id)
    raise _fail(f"API key {key_id} was already revoked." if record else f"No API key with id {key_id!r}.")


@keys_app.command()
def token(
    organization: OrganizationOption,
    project: ProjectOption,
    user: Annotated[str | None, typer.Option("--user", help="The userId claim (optional).")] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Lifetime in seconds.")] = 3600,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Issue a service JWT (for x-internal-service-key) signed with the server's JWT secret."""
    secret = _settings(data_dir, config).jwt_secret
    if secret is None or not secret.get_secret_value():
        raise _fail("No JWT secret is configured: set INTEGRATION_API_JWT_SECRET (or jwt_secret in --config).")
    typer.echo(issue_service_token(secret.get_secret_value(), organization, project, user_id=user, ttl_s=ttl))


def _projects(data_dir: Path | None, config: Path | None) -> ProjectStore:
    return ProjectStore(_settings(data_dir, config).data_dir)


def _budgets(
    daily_tokens: int | None, monthly_tokens: int | None, daily_usd: float | None, monthly_usd: float | None
) -> tuple[Budget, ...]:
    given = (
        ("day", "tokens", daily_tokens),
        ("month", "tokens", monthly_tokens),
        ("day", "usd", daily_usd),
        ("month", "usd", monthly_usd),
    )
    return tuple(Budget(period, unit, float(limit)) for period, unit, limit in given if limit is not None)  # type: ignore[arg-type]


@projects_app.command("set")
def set_project(
    organization: OrganizationOption,
    project: ProjectOption,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_concurrent: ConcurrentOption = None,
    daily_tokens: Annotated[int | None, typer.Option("--daily-tokens", min=1, help="Tokens per UTC day.")] = None,
    monthly_tokens: Annotated[int | None, typer.Option("--monthly-tokens", min=1, help="Tokens per month.")] = None,
    daily_usd: Annotated[float | None, typer.Option("--daily-usd", min=0.0, help="US dollars per UTC day.")] = None,
    monthly_usd: Annotated[float | None, typer.Option("--monthly-usd", min=0.0, help="US dollars per month.")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Set (replace) a project's scope, limits and budgets, shared by all its keys and service tokens.
    Running servers read them within 10 seconds."""
    scope = _scope(KeyScope(), providers, models, None, rpm, tpm, max_concurrent, None, None)
    record = ProjectRecord(organization, project, scope, _budgets(daily_tokens, monthly_tokens, daily_usd, monthly_usd))
    stored = _projects(data_dir, config).set(record)
    typer.echo(f"Project {organization}/{project}: {stored.describe()}.")


@projects_app.command("list")
def list_projects(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print a JSON list instead.")] = False,
) -> None:
    """List every project row (projects without one are unrestricted)."""
    records = _projects(data_dir, config).list()
    if as_json:
        rows = [
            {
                "organization": r.organization_id,
                "project": r.project_id,
                "scope": r.scope.as_dict(),
                "budgets": [{"period": b.period, "unit": b.unit, "limit": b.limit} for b in r.budgets],
            }
            for r in records
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not records:
        typer.echo("No project limits set: every project is unrestricted.")
        return
    for record in records:
        budgets = ", ".join(budget.describe() for budget in record.budgets) or "no budget"
        scope = record.scope.describe()
        typer.echo(f"{record.organization_id}/{record.project_id}  {scope}  {budgets}")


@projects_app.command("remove")
def remove_project(
    organization: OrganizationOption,
    project: ProjectOption,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Remove a project's row: it becomes unrestricted."""
    if not _projects(data_dir, config).remove(organization, project):
        raise _fail(f"No limits were set for project {organization}/{project}.")
    typer.echo(f"Removed the limits of project {organization}/{project}.")
