"""`integration-api usage`: the table and the --json rows, from SQLite or PostgreSQL, with filters and groups."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from integration_api.cli import app
from integration_api.usage import open_usage_store
from integration_api.usage.cli import parse_since
from tests.conftest import make_settings
from tests.usage.test_store import T0, record


@pytest.fixture
def env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    """The environment the command reads its settings from, with a usage log already written."""
    settings = make_settings(tmp_path, database_url=database_url)

    async def write() -> None:
        store = open_usage_store(settings)
        now = time.time()
        await store.write([record(i, time=now - 60, cost=0.25) for i in range(3)])
        await store.write([record(10, time=now - 60, project="web", status="UNAVAILABLE", provider="anthropic")])
        await store.write([record(20, time=T0 - 86_400 * 400, project="web")])  # long ago
        await store.aclose()

    asyncio.run(write())
    variables = {"INTEGRATION_API_DATA_DIR": str(tmp_path)}
    if database_url is not None:
        variables["INTEGRATION_API_DATABASE_URL"] = database_url
    return variables


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, ["usage", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_rows_have_the_group_keys_and_the_sums(env: dict[str, str]) -> None:
    rows = json.loads(run(env, "--json", "--group-by", "provider,model", "--since", "1h"))
    assert rows == [
        {
            "provider": "anthropic",
            "model": "gpt-4o-mini",
            "requests": 1,
            "errors": 1,
            "cancelled": 0,
            "input_tokens": 10,
            "output_tokens": 20,
            "cost": 0.5,
        },
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "requests": 3,
            "errors": 0,
            "cancelled": 0,
            "input_tokens": 30,
            "output_tokens": 60,
            "cost": 0.75,
        },
    ]
    everything = json.loads(run(env, "--json"))  # default groups: organization, project; no time limit
    assert [(row["organization"], row["project"], row["requests"]) for row in everything] == [
        ("acme", "chat", 3),
        ("acme", "web", 2),
    ]
    assert json.loads(run(env, "--json", "--project", "web", "--since", "1d", "--group-by", "status")) == [
        {
            "status": "UNAVAILABLE",
            "requests": 1,
            "errors": 1,
            "cancelled": 0,
            "input_tokens": 10,
            "output_tokens": 20,
            "cost": 0.5,
        },
    ]


def test_the_table(env: dict[str, str]) -> None:
    table = run(env, "--group-by", "project,provider")
    lines = [line.split() for line in table.splitlines() if line.strip()]
    assert lines[0][:3] == ["project", "┃", "provider"]
    rows = [[cell for cell in line if cell not in ("│", "┃")] for line in lines[2:]]
    assert rows == [
        ["chat", "openai", "3", "0", "0", "30", "60", "0.7500"],
        ["web", "anthropic", "1", "1", "0", "10", "20", "0.5000"],
        ["web", "openai", "1", "0", "0", "10", "20", "0.5000"],
    ]


def test_bad_arguments_exit_2(env: dict[str, str]) -> None:
    for args in (["--group-by", "colour"], ["--since", "yesterday"]):
        result = CliRunner().invoke(app, ["usage", *args], env=env)
        assert result.exit_code == 2 and "error:" in result.stderr


def test_nothing_recorded(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["usage", "--json"], env={"INTEGRATION_API_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_since_accepts_durations_and_dates() -> None:
    assert parse_since("90s", 1000.0) == 910.0
    assert parse_since("1h", 10_000.0) == 6400.0
    assert parse_since("2d", 200_000.0) == 200_000.0 - 172_800
    assert parse_since("2027-01-15T08:00", 0) == T0
    assert parse_since("2027-01-15T09:00+01:00", 0) == T0
    with pytest.raises(ValueError, match="duration"):
        parse_since("soon", 0)
