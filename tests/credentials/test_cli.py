"""``integration-api credentials``: add (inline, stdin, @FILE), list without values, remove, rotate; no key, no store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from integration_api.cli import app
from integration_api.credentials import CredentialCipher, CredentialStore, generate_key

SECRET = "sk-CLICANARY-5f1e2d"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("INTEGRATION_API_DATA_DIR", str(tmp_path))
    return CliRunner()


def test_add_list_remove(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("INTEGRATION_API_CREDENTIALS_KEY", key)
    added = runner.invoke(
        app, ["credentials", "add", "team-openai", "--provider", "openai", "--key", "-"], input=SECRET
    )
    assert added.exit_code == 0, added.output
    (tmp_path / "endpoint.txt").write_text("https://acme.example\n")
    azure = ["credentials", "add", "team-azure", "--provider", "azure", "--field", "subscription_key=az-CANARY"]
    assert runner.invoke(app, [*azure, "--field", f"endpoint=@{tmp_path / 'endpoint.txt'}"]).exit_code == 0
    stored = CredentialStore(tmp_path, CredentialCipher([key])).get("team-azure")
    assert stored is not None and stored.value == {"subscription_key": "az-CANARY", "endpoint": "https://acme.example"}
    listed = runner.invoke(app, ["credentials", "list"])
    assert "team-openai" in listed.output and "endpoint,subscription_key" in listed.output
    as_json = runner.invoke(app, ["credentials", "list", "--json"]).output
    for output in (added.output, listed.output, as_json):
        assert SECRET not in output and "az-CANARY" not in output
    again = runner.invoke(app, ["credentials", "add", "team-openai", "--provider", "openai", "--key", "x"])
    assert again.exit_code == 1 and "--replace" in again.output
    assert runner.invoke(app, ["credentials", "remove", "team-azure"]).exit_code == 0
    assert runner.invoke(app, ["credentials", "remove", "team-azure"]).exit_code == 1


def test_no_key_no_store(runner: CliRunner, tmp_path: Path) -> None:
    refused = runner.invoke(app, ["credentials", "add", "c", "--provider", "openai", "--key", SECRET])
    assert refused.exit_code == 1 and "INTEGRATION_API_CREDENTIALS_KEY" in refused.output
    assert not (tmp_path / "credentials.sqlite3").exists()
    unknown = runner.invoke(app, ["credentials", "add", "c", "--provider", "opneai", "--key", SECRET])
    assert unknown.exit_code == 1 and "unknown provider" in unknown.output


def test_rotate(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = generate_key(), generate_key()
    CredentialStore(tmp_path, CredentialCipher([old])).add("c", "openai", {"key": SECRET})
    monkeypatch.setenv("INTEGRATION_API_CREDENTIALS_KEY", f"{new},{old}")
    rotated = runner.invoke(app, ["credentials", "rotate"])
    assert rotated.exit_code == 0 and "Re-encrypted 1" in rotated.output
    stored = CredentialStore(tmp_path, CredentialCipher([new])).get("c")
    assert stored is not None and stored.value == {"key": SECRET}
