"""``integration-api credentials``: add, list, remove and re-encrypt the vendor credentials the server keeps.

Each command finds the store the way the server does (``--data-dir``, else ``INTEGRATION_API_DATA_DIR``, else the
``--config`` file, else ``./data``) and needs the server's ``INTEGRATION_API_CREDENTIALS_KEY`` (except ``list``,
``remove`` and ``generate-key``, which decrypt nothing). Secrets are never printed. A secret given on the command
line is visible to other users of the machine (``ps``) and in shell history: pass ``-`` to read it from stdin, or
``@FILE`` to read it from a file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from integration_api.cli_support import FLAG, load_settings
from integration_api.credentials._cipher import CredentialCipher, CredentialKeyError, generate_key, parse_keys
from integration_api.credentials._store import CredentialExists, CredentialRecord, CredentialStore
from integration_api.settings import Settings
from providers.types import JsonValue
from providers.vendors import VENDOR_NAMES

credentials_app = typer.Typer(
    help="Store vendor credentials on the server (encrypted) for requests to reference by name.",
    no_args_is_help=True,
)

PROVIDERS = (*VENDOR_NAMES, "simulated")
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the store lives (env INTEGRATION_API_DATA_DIR).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="A TOML config file, below flags and environment variables in precedence."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def _settings(data_dir: Path | None, config: Path | None) -> Settings:
    return load_settings(config, data_dir=data_dir)


def _store(settings: Settings, *, decrypting: bool = True) -> CredentialStore:
    key = settings.credentials_key.get_secret_value() if settings.credentials_key is not None else ""
    if not parse_keys(key):
        if decrypting:
            raise _fail(
                "No credentials key is configured: set INTEGRATION_API_CREDENTIALS_KEY (or credentials_key in"
                " --config) to the server's key; `integration-api credentials generate-key` makes a new one."
            )
        key = generate_key()  # listing and removing decrypt nothing: any key opens the table
    try:
        return CredentialStore(settings.data_dir, CredentialCipher.from_setting(key))
    except CredentialKeyError as error:
        raise _fail(str(error)) from error


def _secret(value: str, what: str) -> str:
    """`value`, or what `-` (stdin) or `@FILE` stands for; surrounding newlines dropped."""
    if value == "-":
        return sys.stdin.read().strip("\r\n")
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text().strip("\r\n")
        except OSError as error:
            raise _fail(f"cannot read {what} from {value[1:]}: {error.strerror}") from error
    return value


def _fields(key: str | None, fields: list[str]) -> dict[str, JsonValue]:
    value: dict[str, JsonValue] = {}
    if key is not None:
        value["key"] = _secret(key, "--key")
    for field in fields:
        name, separator, text = field.partition("=")
        if not separator or not name:
            raise _fail(f"--field {name!r}: write NAME=VALUE (VALUE may be - for stdin or @FILE)")
        if name in value:
            raise _fail(f"field {name!r} is given twice")
        value[name] = _secret(text, f"field {name!r}")
    return value


def _record_json(record: CredentialRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "provider": record.provider,
        "fields": list(record.fields),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


@credentials_app.command()
def add(
    name: Annotated[str, typer.Argument(help="The name requests reference (credential_ref).")],
    provider: Annotated[str, typer.Option("--provider", help=f"The provider it is for: {', '.join(PROVIDERS)}.")],
    key: Annotated[str | None, typer.Option("--key", help="The vendor API key (- reads stdin, @FILE a file).")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="Another credential field, NAME=VALUE (e.g. endpoint=https://...); repeatable."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", metavar=FLAG, help="Overwrite a stored credential of that name.")
    ] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Store a vendor credential, encrypted with the credentials key."""
    if provider not in PROVIDERS:
        raise _fail(f"unknown provider {provider!r}: one of {', '.join(PROVIDERS)}")
    value = _fields(key, field or [])
    if not value:
        raise _fail("give the credential's fields: --key and/or --field NAME=VALUE")
    store = _store(_settings(data_dir, config))
    try:
        record = store.add(name, provider, value, replace=replace)
    except (CredentialExists, ValueError) as error:
        raise _fail(str(error)) from error
    typer.echo(f"Stored credential {record.name!r} (id {record.id}, {provider}; fields: {', '.join(record.fields)}).")
    typer.echo(f'Reference it with Credential.value = {{"credential_ref": "{record.name}"}}.', err=True)


@credentials_app.command("list")
def list_credentials(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print a JSON list instead.")] = False,
) -> None:
    """List stored credentials: names, ids, providers and field names, never values."""
    store = _store(_settings(data_dir, config), decrypting=False)
    records = store.list()
    if as_json:
        typer.echo(json.dumps([_record_json(record) for record in records], indent=2))
        return
    if not records:
        typer.echo(f"No stored credentials in {store.path}.")
        return
    rows = [("id", "name", "provider", "fields", "updated")]
    rows += [
        (str(r.id), r.name, r.provider, ",".join(r.fields), r.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
        for r in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@credentials_app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The stored credential's name.")],
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Delete a stored credential; running servers stop serving it within 30 seconds."""
    if not _store(_settings(data_dir, config), decrypting=False).remove(name):
        raise _fail(f"No stored credential named {name!r}.")
    typer.echo(f"Removed stored credential {name!r}.")


@credentials_app.command()
def rotate(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """Re-encrypt every stored credential with the first credentials key (after putting a new key first)."""
    store = _store(_settings(data_dir, config))
    try:
        count = store.rotate()
    except CredentialKeyError as error:
        raise _fail(str(error)) from error
    typer.echo(f"Re-encrypted {count} stored credential(s) with the first credentials key.")


@credentials_app.command("generate-key")
def generate_key_command() -> None:
    """Print a new random credentials key (for INTEGRATION_API_CREDENTIALS_KEY)."""
    typer.echo(generate_key())
