"""The project API key store: a small SQLite file holding only hashes of key secrets.

A key reads ``ia_<key_id>_<secret>``. The key id (12 letters and digits, never ``_``, so the key splits
unambiguously) is public: it names the key in listings, logs and ``revoke``. The secret is 32 random bytes in
url-safe base64 and is shown exactly once, by `ApiKeyStore.create`; the store keeps only its SHA-256.

Each key carries a `KeyScope` (providers, models, stored credentials, limits, expiry), stored as JSON in the
``scope`` column; a key created without one is unrestricted. The same file holds the ``projects`` table
(``auth.projects``: project-level scopes and budgets).

Every call opens its own short-lived connection, so one store is safe to share between threads (the
authenticator calls it through ``asyncio.to_thread``) and between processes (the server and the ``keys`` CLI
on the same file). All methods block: never call them on an event loop.

The schema is versioned with SQLite's ``user_version``: opening a file of an older version migrates it in one
``BEGIN IMMEDIATE`` transaction (so two processes opening it at once migrate it once), and every existing key
stays valid and unrestricted.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import string
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from auth.principal import KeyScope, Principal

DB_FILENAME = "api_keys.sqlite3"
KEY_PREFIX = "ia_"
KEY_ID_LENGTH = 12
SECRET_BYTES = 32

_KEY_ID_ALPHABET = string.ascii_letters + string.digits
# token_urlsafe(32) is 43 characters of [A-Za-z0-9_-]; anything else cannot be one of our keys.
_KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}([A-Za-z0-9]{{{KEY_ID_LENGTH}}})_([A-Za-z0-9_-]{{43}})$")

# Version 0: the table as the first release made it. Each later version is one step, applied in order.
_SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id          TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL,
    name            TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
)
"""
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: key scopes (NULL: unrestricted) and project-level scopes and budgets.
    (
        "ALTER TABLE api_keys ADD COLUMN scope TEXT",
        """CREATE TABLE IF NOT EXISTS projects (
            organization_id TEXT NOT NULL,
            project_id      TEXT NOT NULL,
            scope           TEXT,
            budgets         TEXT NOT NULL DEFAULT '[]',
            updated_at      TEXT NOT NULL,
            PRIMARY KEY (organization_id, project_id)
        )""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_RECORD_COLUMNS = "key_id, name, organization_id, project_id, created_at, revoked_at, scope"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the store knows about a key, minus its secret (and its hash)."""

    key_id: str
    name: str
    organization_id: str
    project_id: str
    created_at: datetime
    revoked_at: datetime | None = None
    scope: KeyScope = field(default_factory=KeyScope)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def scope_to_json(scope: KeyScope) -> str | None:
    """The stored form of a scope; None (SQL NULL) for an unrestricted one."""
    if scope.unrestricted:
        return None
    value = scope.as_dict()
    return json.dumps({name: item for name, item in value.items() if item not in (None, [])}, sort_keys=True)


def scope_from_json(text: str | None) -> KeyScope:
    if not text:
        return KeyScope()
    value = json.loads(text)
    expires_at = value.get("expires_at")
    return KeyScope(
        providers=tuple(value.get("providers", ())),
        models=tuple(value.get("models", ())),
        credentials=tuple(value.get("credentials", ())),
        rpm=value.get("rpm"),
        tpm=value.get("tpm"),
        max_concurrent=value.get("max_concurrent"),
        max_streams=value.get("max_streams"),
        expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
    )


def hash_secret(secret: str) -> str:
    """The stored form of a key secret.

    A plain SHA-256 suffices, unlike for passwords: the secret is 256 bits from `secrets`, so even a leaked
    hash cannot be brute-forced, and a deliberately slow KDF (bcrypt, scrypt) would only add latency to every
    authentication without adding any security.
    """
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_key(raw_key: str) -> tuple[str, str] | None:
    """Split ``ia_<key_id>_<secret>`` into (key_id, secret); None when it cannot be one of our keys."""
    match = _KEY_PATTERN.fullmatch(raw_key)
    return (match.group(1), match.group(2)) if match else None


def _new_key_id() -> str:
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def _now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    # A fixed width keeps the text column's order chronological.
    return moment.isoformat(timespec="microseconds")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _record(row: tuple[str, str, str, str, str, str | None, str | None]) -> ApiKeyRecord:
    key_id, name, organization_id, project_id, created_at, revoked_at, scope = row
    return ApiKeyRecord(
        key_id=key_id,
        name=name,
        organization_id=organization_id,
        project_id=project_id,
        created_at=datetime.fromisoformat(created_at),
        revoked_at=_parse_time(revoked_at),
        scope=scope_from_json(scope),
    )


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """One connection, in one transaction (committed on success, rolled back on error)."""
    with closing(sqlite3.connect(path, timeout=10.0)) as connection, connection:
        yield connection


def migrate(path: Path) -> None:
    """Bring the database at `path` to `SCHEMA_VERSION` (creating it if needed); safe with concurrent openers."""
    with closing(sqlite3.connect(path, timeout=10.0, isolation_level=None)) as connection:
        if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        # IMMEDIATE takes the write lock first: a second process waits here, then sees the new version.
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                connection.execute(_SCHEMA_V0)
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


class ApiKeyStore:
    """Create, list, revoke and verify project API keys kept in ``<data_dir>/api_keys.sqlite3``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._generation = 0
        self._generation_lock = threading.Lock()
        migrate(self.path)

    @property
    def generation(self) -> int:
        """Grows on every successful `revoke` through this object; caches of verifications compare it."""
        return self._generation

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def _bump_generation(self) -> None:
        with self._generation_lock:
            self._generation += 1

    def create(
        self, name: str, organization_id: str, project_id: str, scope: KeyScope | None = None
    ) -> tuple[str, ApiKeyRecord]:
        """Make a new key; returns the plaintext key (shown once, never stored) and its record."""
        key_id, secret = _new_key_id(), secrets.token_urlsafe(SECRET_BYTES)
        scope = scope or KeyScope()
        record = ApiKeyRecord(key_id, name, organization_id, project_id, created_at=_now(), scope=scope)
        with self._connect() as connection:
            connection.execute(
                "INSERT INTO api_keys (key_id, secret_hash, name, organization_id, project_id, created_at, scope)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    hash_secret(secret),
                    name,
                    organization_id,
                    project_id,
                    _format_time(record.created_at),
                    scope_to_json(scope),
                ),
            )
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def update_scope(self, key_id: str, scope: KeyScope) -> ApiKeyRecord | None:
        """Replace a key's scope; None when there is no such key. Running servers see it within their key cache
        window (30 s), at once through this object (its generation grows)."""
        with self._connect() as connection:
            cursor = connection.execute(
                "UPDATE api_keys SET scope = ? WHERE key_id = ?", (scope_to_json(scope), key_id)
            )
            if cursor.rowcount != 1:
                return None
            row = connection.execute(f"SELECT {_RECORD_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        self._bump_generation()
        return _record(row)

    def list(self) -> builtins.list[ApiKeyRecord]:
        """Every key, oldest first, revoked ones included (hashes are never returned)."""
        with self._connect() as connection:
            rows = connection.execute(f"SELECT {_RECORD_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
            return [_record(row) for row in rows]

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of one key, or None if there is no such key."""
        with self._connect() as connection:
            row = connection.execute(f"SELECT {_RECORD_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return _record(row) if row is not None else None

    def revoke(self, key_id: str) -> bool:
        """Revoke a key now; False when there is no such key or it was already revoked."""
        with self._connect() as connection:
            cursor = connection.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (_format_time(_now()), key_id),
            )
            revoked = cursor.rowcount == 1
        if revoked:
            self._bump_generation()
        return revoked

    def verify(self, raw_key: str) -> Principal | None:
        """The principal of a valid, unrevoked key; None when it is malformed, unknown, wrong or revoked."""
        parsed = parse_key(raw_key)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self._connect() as connection:
            row = connection.execute(
                "SELECT secret_hash, organization_id, project_id, revoked_at, scope FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            return None
        secret_hash, organization_id, project_id, revoked_at, scope_text = row
        if not hmac.compare_digest(hash_secret(secret), secret_hash) or revoked_at is not None:
            return None
        # An expired key still verifies: the policy layer refuses its requests with PERMISSION_DENIED naming the
        # expiry, which tells the caller more than UNAUTHENTICATED would.
        scope = scope_from_json(scope_text)
        return Principal(
            organization_id, project_id, method="api_key", key_id=key_id, scope=None if scope.unrestricted else scope
        )
