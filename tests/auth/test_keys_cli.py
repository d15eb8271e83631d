"""``integration-api keys``: create, list (table, plain, JSON), revoke and token, through CliRunner on a real store."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from auth import ApiKeyStore, verify_service_token
from auth.cli import _table, keys_app

SECRET = "cli-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("INTEGRATION_API_DATA_DIR", "INTEGRATION_API_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner(env={"COLUMNS": "200"})


def _create(runner: CliRunner, data_dir: Path, name: str = "backend") -> str:
    args = ["create", "--name", name, "--organization", "acme", "--project", "chat", "--data-dir", str(data_dir)]
    result = runner.invoke(keys_app, args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_create_prints_the_key_once_on_stdout(runner: CliRunner, tmp_path: Path) -> None:
    key = _create(runner, tmp_path)
    principal = ApiKeyStore(tmp_path).verify(key)
    assert principal is not None and (principal.organization_id, principal.project_id) == ("acme", "chat")


def test_create_names_the_key_id(runner: CliRunner, tmp_path: Path) -> None:
    args = ["create", "--name", "n", "--organization", "o", "--project", "p", "--data-dir", str(tmp_path)]
    result = runner.invoke(keys_app, args)
    [record] = ApiKeyStore(tmp_path).list()
    assert record.key_id in result.stderr and "only this once" in result.stderr


def test_create_requires_its_options(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(keys_app, ["create", "--name", "n", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert ApiKeyStore(tmp_path).list() == []


def test_data_dir_from_the_environment(runner: CliRunner, tmp_path: Path) -> None:
    args = ["create", "--name", "n", "--organization", "o", "--project", "p"]
    result = runner.invoke(keys_app, args, env={"INTEGRATION_API_DATA_DIR": str(tmp_path / "env")})
    assert result.exit_code == 0, result.output
    assert ApiKeyStore(tmp_path / "env").verify(result.stdout.strip()) is not None


def test_data_dir_from_a_config_file(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-config"}"\n')
    args = ["create", "--name", "n", "--organization", "o", "--project", "p", "--config", str(config)]
    result = runner.invoke(keys_app, args)
    assert result.exit_code == 0, result.output
    assert len(ApiKeyStore(tmp_path / "from-config").list()) == 1


def test_list_shows_a_table_without_secrets(runner: CliRunner, tmp_path: Path) -> None:
    key = _create(runner, tmp_path, name="first")
    _create(runner, tmp_path, name="second")
    result = runner.invoke(keys_app, ["list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for record in ApiKeyStore(tmp_path).list():
        assert record.key_id in result.stdout
    for header in ("id", "name", "org", "project", "created", "revoked", "first", "second", "acme", "chat"):
        assert header in result.stdout
    secret = key.split("_", 2)[2]  # ia_<id>_<secret>: the secret itself may contain "_"
    assert key not in result.stdout and secret[:12] not in result.stdout


def test_list_of_an_empty_store(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(keys_app, ["list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "No API keys" in result.stdout


def test_revoke(runner: CliRunner, tmp_path: Path) -> None:
    key = _create(runner, tmp_path)
    [record] = ApiKeyStore(tmp_path).list()
    result = runner.invoke(keys_app, ["revoke", record.key_id, "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "Revoked" in result.stdout
    assert ApiKeyStore(tmp_path).verify(key) is None
    listing = runner.invoke(keys_app, ["list", "--data-dir", str(tmp_path)]).stdout
    assert listing.count("UTC") == 2


def test_revoke_twice_or_unknown_fails(runner: CliRunner, tmp_path: Path) -> None:
    _create(runner, tmp_path)
    [record] = ApiKeyStore(tmp_path).list()
    runner.invoke(keys_app, ["revoke", record.key_id, "--data-dir", str(tmp_path)])
    again = runner.invoke(keys_app, ["revoke", record.key_id, "--data-dir", str(tmp_path)])
    assert again.exit_code == 1 and "already revoked" in again.stderr
    unknown = runner.invoke(keys_app, ["revoke", "nosuchkey", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 1 and "No API key" in unknown.stderr


def test_token_uses_the_configured_secret(runner: CliRunner, tmp_path: Path) -> None:
    args = ["token", "--organization", "acme", "--project", "chat", "--user", "u1", "--ttl", "60"]
    result = runner.invoke(keys_app, [*args, "--data-dir", str(tmp_path)], env={"INTEGRATION_API_JWT_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    principal = verify_service_token(result.stdout.strip(), SECRET)
    assert (principal.organization_id, principal.project_id, principal.user_id) == ("acme", "chat", "u1")


def test_token_without_a_secret_names_the_remedy(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(keys_app, ["token", "--organization", "o", "--project", "p", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "INTEGRATION_API_JWT_SECRET" in result.stderr and result.stdout == ""


def test_token_rejects_a_non_positive_ttl(runner: CliRunner, tmp_path: Path) -> None:
    args = ["token", "--organization", "o", "--project", "p", "--ttl", "0", "--data-dir", str(tmp_path)]
    result = runner.invoke(keys_app, args, env={"INTEGRATION_API_JWT_SECRET": SECRET})
    assert result.exit_code != 0


LONG_NAME = "billing-backend-in-the-eu-west-region-that-has-a-rather-long-descriptive-name"


def test_list_never_truncates_on_a_narrow_screen(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "40", "INTEGRATION_API_DATA_DIR": None})
    _create(runner, tmp_path, name=LONG_NAME)
    result = runner.invoke(keys_app, ["list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [record] = ApiKeyStore(tmp_path).list()
    [row] = [line for line in result.stdout.splitlines() if record.key_id in line]
    assert LONG_NAME in row and "acme" in row and "…" not in result.stdout


def test_the_terminal_table_folds_long_cells_instead_of_cutting_them(tmp_path: Path) -> None:
    ApiKeyStore(tmp_path).create(name=LONG_NAME, organization_id="acme", project_id="chat")
    console = Console(width=40, file=io.StringIO(), record=True)
    console.print(_table(ApiKeyStore(tmp_path).list()))
    text = console.export_text()
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    [record] = ApiKeyStore(tmp_path).list()
    assert "".join(row[0].strip() for row in rows) == record.key_id  # folded over lines, every character kept
    assert "".join(row[1].strip() for row in rows) == LONG_NAME


def test_list_as_json_has_every_record_and_no_secret(runner: CliRunner, tmp_path: Path) -> None:
    key = _create(runner, tmp_path, name="first")
    _create(runner, tmp_path, name="second")
    [first, second] = ApiKeyStore(tmp_path).list()
    ApiKeyStore(tmp_path).revoke(second.key_id)
    result = runner.invoke(keys_app, ["list", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [(r["id"], r["name"], r["organization"], r["project"]) for r in records] == [
        (first.key_id, "first", "acme", "chat"),
        (second.key_id, "second", "acme", "chat"),
    ]
    assert records[0]["revoked_at"] is None and datetime.fromisoformat(records[1]["revoked_at"])
    assert datetime.fromisoformat(records[0]["created_at"]) == first.created_at
    secret = key.split("_", 2)[2]  # ia_<id>_<secret>: the secret itself may contain "_"
    assert key not in result.stdout and secret[:12] not in result.stdout
    empty = runner.invoke(keys_app, ["list", "--json", "--data-dir", str(tmp_path / "none")])
    assert json.loads(empty.stdout) == []
