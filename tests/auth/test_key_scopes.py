"""Key scopes and project rows in the key store: persistence, the migration from the first schema, updates."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from auth import ApiKeyStore, Authenticator
from auth.api_keys import DB_FILENAME, SCHEMA_VERSION, hash_secret
from auth.principal import KeyScope
from auth.projects import Budget, ProjectRecord, ProjectStore
from integration_api.settings import Settings

SCOPE = KeyScope(
    providers=("openai", "anthropic"),
    models=("gpt-4o*", "claude-*"),
    credentials=("team-a-*",),
    rpm=600,
    tpm=200_000,
    max_concurrent=20,
    max_streams=5,
    expires_at=datetime(2030, 1, 1, tzinfo=UTC),
)

_FIRST_SCHEMA = """
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, name TEXT NOT NULL, organization_id TEXT NOT NULL,
    project_id TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT
)
"""


def test_a_scope_survives_the_store(tmp_path: Path) -> None:
    key, record = ApiKeyStore(tmp_path).create("k", "o", "p", scope=SCOPE)
    assert record.scope == SCOPE
    store = ApiKeyStore(tmp_path)
    assert store.get(record.key_id).scope == SCOPE  # type: ignore[union-attr]
    principal = store.verify(key)
    assert principal is not None and principal.scope == SCOPE


def test_a_key_without_flags_is_unrestricted(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    key, record = store.create("k", "o", "p")
    assert record.scope.unrestricted
    principal = store.verify(key)
    assert principal is not None and principal.scope is None


def test_keys_of_the_first_schema_stay_valid_and_unrestricted(tmp_path: Path) -> None:
    secret = "s" * 43
    with sqlite3.connect(tmp_path / DB_FILENAME) as connection:
        connection.execute(_FIRST_SCHEMA)
        connection.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
            ("AAAAAAAAAAAA", hash_secret(secret), "old", "o", "p", datetime.now(UTC).isoformat()),
        )
    store = ApiKeyStore(tmp_path)
    principal = store.verify(f"ia_AAAAAAAAAAAA_{secret}")
    assert principal is not None and principal.key_id == "AAAAAAAAAAAA" and principal.scope is None
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # A second open finds the current version and changes nothing.
    assert ApiKeyStore(tmp_path).verify(f"ia_AAAAAAAAAAAA_{secret}") == principal


def test_concurrent_openers_migrate_once(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_FILENAME) as connection:
        connection.execute(_FIRST_SCHEMA)
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            ApiKeyStore(tmp_path)
        except BaseException as exc:  # collected: a duplicate-column error would be the failure
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_update_replaces_the_scope_and_a_running_authenticator_sees_it(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    key, record = store.create("k", "o", "p", scope=SCOPE)
    authenticator = Authenticator(Settings(data_dir=tmp_path), store=store)

    async def scope_seen() -> KeyScope | None:
        return (await authenticator.authenticate((("x-api-key", key),))).scope

    assert asyncio.run(scope_seen()) == SCOPE
    narrower = KeyScope(providers=("openai",), rpm=10)
    updated = store.update_scope(record.key_id, narrower)
    assert updated is not None and updated.scope == narrower
    assert asyncio.run(scope_seen()) == narrower  # the cache entry went stale with the store's generation
    assert store.update_scope("nosuchkey123", narrower) is None


def test_expired_keys_still_verify_so_the_policy_can_name_the_expiry(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    past = datetime.now(UTC) - timedelta(days=1)
    key, _ = store.create("k", "o", "p", scope=KeyScope(expires_at=past))
    principal = store.verify(key)
    assert principal is not None and principal.scope is not None and principal.scope.expired(datetime.now(UTC))


def test_project_rows(tmp_path: Path) -> None:
    projects = ProjectStore(tmp_path)
    assert projects.list() == []
    budgets = (Budget("day", "tokens", 1_000_000), Budget("month", "usd", 50.0))
    projects.set(ProjectRecord("acme", "chat", KeyScope(providers=("openai",), rpm=100), budgets))
    projects.set(ProjectRecord("acme", "search"))
    stored = ProjectStore(tmp_path).get("acme", "chat")
    assert stored is not None and stored.scope.rpm == 100 and stored.budgets == budgets
    assert stored.updated_at is not None
    projects.set(ProjectRecord("acme", "chat", KeyScope(tpm=5)))  # replaces the whole row
    replaced = projects.get("acme", "chat")
    assert replaced is not None and replaced.scope == KeyScope(tpm=5) and replaced.budgets == ()
    assert [(r.organization_id, r.project_id) for r in projects.list()] == [("acme", "chat"), ("acme", "search")]
    assert projects.remove("acme", "search") and not projects.remove("acme", "search")
    # The key store and the project store share one file and one schema version.
    ApiKeyStore(tmp_path).create("k", "acme", "chat")
    assert len(ProjectStore(tmp_path).list()) == 1


def test_scope_globs_and_descriptions() -> None:
    assert SCOPE.allows_provider("openai") and not SCOPE.allows_provider("mistral")
    assert SCOPE.allows_model("gpt-4o-mini") and not SCOPE.allows_model("GPT-4O") and not SCOPE.allows_model("")
    assert KeyScope().allows_model("") and KeyScope().unrestricted and KeyScope().describe() == "unrestricted"
    assert "providers=openai,anthropic" in SCOPE.describe() and "rpm=600" in SCOPE.describe()
    assert Budget("day", "tokens", 1000).name == "daily token budget"
