"""``integration-api keys create|update|list`` with scopes and ``projects set|list|remove``, on a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auth import ApiKeyStore
from auth.cli import keys_app, parse_expiry, projects_app
from auth.principal import KeyScope
from auth.projects import Budget, ProjectStore


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("INTEGRATION_API_DATA_DIR", raising=False)
    return CliRunner(env={"COLUMNS": "200"})


def _invoke(runner: CliRunner, app: typer.Typer, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_create_with_every_scope_flag(runner: CliRunner, tmp_path: Path) -> None:
    key = _invoke(
        runner,
        keys_app,
        *("create", "--name", "n", "--organization", "acme", "--project", "chat", "--data-dir", str(tmp_path)),
        *("--providers", "openai, anthropic", "--models", "gpt-4o*", "--credentials", "team-a-*"),
        *("--rpm", "600", "--tpm", "200000", "--max-concurrent", "20", "--max-streams", "4", "--expires", "30d"),
    ).strip()
    principal = ApiKeyStore(tmp_path).verify(key)
    assert principal is not None and principal.scope is not None
    scope = principal.scope
    assert scope.providers == ("openai", "anthropic") and scope.models == ("gpt-4o*",)
    assert scope.credentials == ("team-a-*",)
    assert (scope.rpm, scope.tpm, scope.max_concurrent, scope.max_streams) == (600, 200_000, 20, 4)
    assert scope.expires_at is not None
    assert abs(scope.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_list_shows_scopes_and_update_changes_them(runner: CliRunner, tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    _, record = store.create("n", "o", "p", scope=KeyScope(providers=("openai",), rpm=10))
    _, open_record = store.create("m", "o", "p")
    listing = _invoke(runner, keys_app, "list", "--data-dir", str(tmp_path))
    assert "providers=openai rpm=10" in listing and "unrestricted" in listing
    _invoke(runner, keys_app, "update", record.key_id, "--tpm", "500", "--clear", "rpm", "--data-dir", str(tmp_path))
    updated = store.get(record.key_id)
    assert updated is not None and updated.scope == KeyScope(providers=("openai",), tpm=500)
    rows = json.loads(_invoke(runner, keys_app, "list", "--json", "--data-dir", str(tmp_path)))
    by_id = {row["id"]: row for row in rows}
    assert by_id[record.key_id]["scope"]["tpm"] == 500 and by_id[record.key_id]["scope"]["rpm"] is None
    assert by_id[open_record.key_id]["scope"]["providers"] == []


def test_update_refuses_unknown_keys_and_fields(runner: CliRunner, tmp_path: Path) -> None:
    _, record = ApiKeyStore(tmp_path).create("n", "o", "p")
    missing = runner.invoke(keys_app, ["update", "nosuchkey123", "--rpm", "5", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "No API key" in missing.output
    bad = runner.invoke(keys_app, ["update", record.key_id, "--clear", "colour", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "not a scope field" in bad.output


def test_expiry_forms() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("4w", now) == now + timedelta(weeks=4)
    assert parse_expiry("2027-01-31", now) == datetime(2027, 1, 31, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_expiry("soon", now)


def test_projects_set_list_remove(runner: CliRunner, tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path))
    out = _invoke(
        runner,
        projects_app,
        *("set", "--organization", "acme", "--project", "chat", "--rpm", "100", "--providers", "openai"),
        *("--daily-tokens", "1000000", "--monthly-usd", "50", *where),
    )
    assert "acme/chat" in out
    record = ProjectStore(tmp_path).get("acme", "chat")
    assert record is not None and record.scope == KeyScope(providers=("openai",), rpm=100)
    assert record.budgets == (Budget("day", "tokens", 1_000_000), Budget("month", "usd", 50.0))
    listing = _invoke(runner, projects_app, "list", *where)
    assert "acme/chat" in listing and "1,000,000 tokens per day" in listing and "$50.00 per month" in listing
    rows = json.loads(_invoke(runner, projects_app, "list", "--json", *where))
    assert rows[0]["budgets"][1] == {"period": "month", "unit": "usd", "limit": 50.0}
    _invoke(runner, projects_app, "remove", "--organization", "acme", "--project", "chat", *where)
    assert ProjectStore(tmp_path).list() == []
    again = runner.invoke(projects_app, ["remove", "--organization", "acme", "--project", "chat", *where])
    assert again.exit_code == 1
