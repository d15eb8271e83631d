"""The stored-credentials table: vendor credentials kept by the server, encrypted, in ``credentials.sqlite3``.

A row holds a credential's name, numeric id, provider, the names of its fields (for listings) and one Fernet token
of the whole value. The token also seals the row's name and provider, and decryption checks them: a token copied
into another row (by someone who can write the file but holds no key) is refused instead of serving another
credential's secret under this name.

Concurrency: every call opens its own connection (safe across threads and processes: the server and the
``credentials`` CLI on the same file, ``serve --workers N``), the file is in WAL mode so readers never wait for a
writer, and writers wait for each other (busy timeout) instead of failing. Every method blocks.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from integration_api.credentials._cipher import CredentialCipher, CredentialKeyError
from integration_api.sqlite import open_wal
from providers.types import JsonValue

DB_FILENAME = "credentials.sqlite3"
BUSY_TIMEOUT_S = 10.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    provider   TEXT NOT NULL,
    fields     TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
_COLUMNS = "id, name, provider, fields, created_at, updated_at"


class CredentialExists(ValueError):
    """A credential of that name is already stored (use replace)."""


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """What a listing shows of a stored credential: never a value."""

    id: int
    name: str
    provider: str
    fields: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A stored credential with its decrypted value. Its repr hides the value."""

    record: CredentialRecord
    value: Mapping[str, JsonValue]

    def __repr__(self) -> str:
        return f"StoredCredential({self.record.name!r}, provider={self.record.provider!r}, fields={self.record.fields})"


def valid_name(name: str) -> bool:
    """Names are globbed by key scopes and shown in messages: letters, digits, ``.``, ``_``, ``-``."""
    return NAME_PATTERN.fullmatch(name) is not None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _record(row: tuple[int, str, str, str, str, str]) -> CredentialRecord:
    id_, name, provider, fields, created_at, updated_at = row
    return CredentialRecord(
        id_,
        name,
        provider,
        tuple(json.loads(fields)),
        datetime.fromisoformat(created_at),
        datetime.fromisoformat(updated_at),
    )


class CredentialStore:
    """Add, list, remove, read and re-encrypt stored credentials."""

    def __init__(self, data_dir: Path, cipher: CredentialCipher) -> None:
        self.path = Path(data_dir) / DB_FILENAME
        self._cipher = cipher
        # WAL is persistent: set once per file, with the schema, retried while another process does the same.
        open_wal(self.path, _SCHEMA, int(BUSY_TIMEOUT_S * 1000)).close()

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One connection per call, in one transaction; a writer takes the write lock first (BEGIN IMMEDIATE), so
        two processes' read-then-write transactions queue instead of one failing with "database is locked"."""
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as connection:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _seal(self, name: str, provider: str, value: Mapping[str, JsonValue]) -> bytes:
        payload = {"name": name, "provider": provider, "value": dict(value)}
        return self._cipher.encrypt(json.dumps(payload, separators=(",", ":")).encode())

    def _open(self, record: CredentialRecord, sealed: bytes) -> StoredCredential:
        payload = json.loads(self._cipher.decrypt(sealed))
        if payload.get("name") != record.name or payload.get("provider") != record.provider:
            raise CredentialKeyError(f"stored credential {record.name!r} does not belong to its row (tampered with?)")
        return StoredCredential(record, payload["value"])

    def add(
        self, name: str, provider: str, value: Mapping[str, JsonValue], *, replace: bool = False
    ) -> CredentialRecord:
        """Store `value` under `name` (encrypted); with `replace`, an existing one of that name is overwritten
        (it keeps its id). Raises `CredentialExists` otherwise, ValueError for a bad name or an empty value."""
        if not valid_name(name):
            raise ValueError(f"{name!r} is not a valid credential name (letters, digits, '.', '_', '-'; 128 at most)")
        if not value:
            raise ValueError("a stored credential needs at least one field")
        fields = json.dumps(sorted(value))
        sealed, now = self._seal(name, provider, value), _now()
        with self._connect(write=True) as connection:
            exists = connection.execute("SELECT 1 FROM credentials WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise CredentialExists(f"a credential named {name!r} is already stored (add --replace to overwrite)")
            if exists:
                connection.execute(
                    "UPDATE credentials SET provider = ?, fields = ?, sealed = ?, updated_at = ? WHERE name = ?",
                    (provider, fields, sealed, now, name),
                )
            else:
                connection.execute(
                    "INSERT INTO credentials (name, provider, fields, sealed, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, provider, fields, sealed, now, now),
                )
            row = connection.execute(f"SELECT {_COLUMNS} FROM credentials WHERE name = ?", (name,)).fetchone()
        return _record(row)

    def list(self) -> builtins.list[CredentialRecord]:
        """Every stored credential, by name; no value is decrypted."""
        with self._connect() as connection:
            return [_record(row) for row in connection.execute(f"SELECT {_COLUMNS} FROM credentials ORDER BY name")]

    def remove(self, name: str) -> bool:
        """Delete a stored credential; False when there is none of that name."""
        with self._connect(write=True) as connection:
            return connection.execute("DELETE FROM credentials WHERE name = ?", (name,)).rowcount == 1

    def get(self, name: str) -> StoredCredential | None:
        """The credential named `name`, decrypted, or None."""
        return self._get("name = ?", name)

    def get_by_id(self, credential_id: int) -> StoredCredential | None:
        """The credential with this numeric id (`Credential.id` on the wire), decrypted, or None."""
        return self._get("id = ?", credential_id)

    def _get(self, where: str, key: str | int) -> StoredCredential | None:
        with self._connect() as connection:
            row = connection.execute(f"SELECT {_COLUMNS}, sealed FROM credentials WHERE {where}", (key,)).fetchone()
        if row is None:
            return None
        return self._open(_record(row[:6]), row[6])

    def rotate(self) -> int:
        """Re-encrypt every row with the first configured key (in one transaction); returns how many."""
        with self._connect(write=True) as connection:
            rows = connection.execute("SELECT id, sealed FROM credentials").fetchall()
            for row_id, sealed in rows:
                connection.execute(
                    "UPDATE credentials SET sealed = ? WHERE id = ?", (self._cipher.rotate(sealed), row_id)
                )
        return len(rows)
