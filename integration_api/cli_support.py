"""What every `integration-api` command that reads the server's settings shares: loading them, and reporting.

A bad setting or a missing config file is one line per problem on stderr and exit code 2 (no traceback); an
``INTEGRATION_API_*`` variable that names no setting is a one-line warning. Only typer and the settings are
imported, so `integration-api --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from integration_api.settings import ConfigError, Settings, environment_warnings

# typer shows a type column ("<bool>") even for flags, which reads as "takes a value"; an empty metavar hides it.
FLAG = ""
BAD_SETTINGS_EXIT_CODE = 2


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """`Settings.load`, warning about unknown variables; a `ConfigError` becomes its lines on stderr and exit 2."""
    for warning in environment_warnings(os.environ):
        typer.echo(warning, err=True)
    try:
        return Settings.load(config, **flags)
    except ConfigError as error:
        for line in str(error).splitlines():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE) from error
