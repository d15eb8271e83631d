"""``integration-api keys``: create, list and revoke project API keys; issue service tokens.

Each command finds the key store the way the server does: ``--data-dir``, else ``INTEGRATION_API_DATA_DIR``,
else the ``--config`` file, else ``./data``. Output meant for scripts (a new key, a token) goes to stdout on
a line of its own; notes go to stderr.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from auth.api_keys import ApiKeyRecord, ApiKeyStore
from auth.jwt_tokens import issue_service_token
from integration_api.cli_support import FLAG, load_settings
from integration_api.settings import Settings

keys_app = typer.Typer(help="Create, list and revoke API keys; issue service tokens.", no_args_is_help=True)

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the key store lives (env INTEGRATION_API_DATA_DIR).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="A TOML config file, below flags and environment variables in precedence."),
]
COLUMNS = ("id", "name", "org", "project", "created", "revoked")
OrganizationOption = Annotated[str, typer.Option("--organization", help="The organization id.")]
ProjectOption = Annotated[str, typer.Option("--project", help="The project id.")]


def _settings(data_dir: Path | None, config: Path | None) -> Settings:
    return load_settings(config, data_dir=data_dir)


def _store(data_dir: Path | None, config: Path | None) -> ApiKeyStore:
    return ApiKeyStore(_settings(data_dir, config).data_dir)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


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
    }


@keys_app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="A label for the key, e.g. the backend using it.")],
    organization: OrganizationOption,
    project: ProjectOption,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a project API key and print it once: it cannot be shown again."""
    key, record = _store(data_dir, config).create(name=name, organization_id=organization, project_id=project)
    typer.echo(f"Created API key {record.key_id} ({name!r}, organization {organization}, project {project}).", err=True)
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
