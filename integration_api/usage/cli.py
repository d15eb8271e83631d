"""``integration-api usage``: who spent what, summed from the usage log.

It reads the store the server writes: PostgreSQL when ``database_url`` is set, else ``usage.sqlite3`` in the data
directory (``--data-dir``, ``INTEGRATION_API_DATA_DIR``, the ``--config`` file, ``./data``). Records still pending in
a running server's memory (at most one flush interval's worth) are not counted yet.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from integration_api.cli_support import BAD_SETTINGS_EXIT_CODE, FLAG, load_settings
from integration_api.errors import Unavailable
from integration_api.usage.record import DEFAULT_GROUP_BY, GROUP_KEYS, UsageQuery, UsageRow
from integration_api.usage.store import open_usage_store

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
NUMBERS = ("requests", "errors", "cancelled", "input_tokens", "output_tokens", "cost")


def parse_since(value: str, now: float) -> float:
    """Unix seconds of `value`: a duration back from `now` (``90s``, ``30m``, ``1h``, ``7d``, ``2w``) or an ISO 8601
    date or time (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip().lower())
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise ValueError(f"--since {value!r}: give a duration (30m, 1h, 7d) or a date (2026-12-01T09:00)") from error
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_group_by(value: str) -> tuple[str, ...]:
    keys = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"--group-by {', '.join(unknown)}: choose from {', '.join(GROUP_KEYS)}")
    return keys


def _table(rows: list[UsageRow], group_by: tuple[str, ...]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for key in group_by:
        table.add_column(key)
    for name in NUMBERS:
        table.add_column(name.replace("_", " "), justify="right")
    for row in rows:
        numbers = [f"{row.requests:,}", f"{row.errors:,}", f"{row.cancelled:,}"]
        numbers += [f"{row.input_tokens:,}", f"{row.output_tokens:,}", f"{row.cost:.4f}"]
        table.add_row(*[str(row.keys[key]) if row.keys[key] is not None else "-" for key in group_by], *numbers)
    return table


async def _summarize(query: UsageQuery, data_dir: Path | None, config: Path | None) -> list[UsageRow]:
    store = open_usage_store(load_settings(config, data_dir=data_dir))
    try:
        return await store.summarize(query)
    finally:
        await store.aclose()


def usage_command(
    project: Annotated[str | None, typer.Option(help="Only this project's requests.")] = None,
    organization: Annotated[str | None, typer.Option(help="Only this organization's requests.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only requests started since: 30m, 1h, 7d, or a date (2026-12-01T09:00).")
    ] = None,
    group_by: Annotated[
        str, typer.Option(help=f"Comma-separated group keys, from: {', '.join(GROUP_KEYS)}.")
    ] = ",".join(DEFAULT_GROUP_BY),
    json_output: Annotated[bool, typer.Option("--json", metavar=FLAG, help="A JSON list of rows.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the usage log lives (env INTEGRATION_API_DATA_DIR).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A TOML config file, below flags and environment variables in precedence."),
    ] = None,
) -> None:
    """Sum the usage log: requests, errors, tokens and cost per project (or per --group-by keys)."""
    try:
        keys = parse_group_by(group_by)
        query = UsageQuery(
            since=parse_since(since, time.time()) if since else None,
            project=project,
            organization=organization,
            group_by=keys,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE) from error
    try:
        rows = asyncio.run(_summarize(query, data_dir, config))
    except Unavailable as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from error
    if json_output:
        typer.echo(json.dumps([row.as_dict() for row in rows], indent=2))
    elif not rows:
        typer.echo("no usage recorded" + (" in that window" if since else ""), err=True)
    else:
        console = Console()
        if not console.is_terminal:  # a pipe or a file gets every cell whole, however wide
            console = Console(width=10_000)
        console.print(_table(rows, keys))
