"""The stored-credentials table: encrypted on disk, listed without values, key rotation, tampering, several processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from integration_api.credentials import (
    CredentialCipher,
    CredentialExists,
    CredentialKeyError,
    CredentialStore,
    generate_key,
)

SECRET = "sk-STOREDCANARY-0123456789abcdef"


@pytest.fixture
def key() -> str:
    return generate_key()


def store_files(data_dir: Path) -> bytes:
    """Every byte the store left on disk: the database, its WAL and shared-memory files."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("credentials.sqlite3*")))


def test_the_secret_is_encrypted_on_disk(tmp_path: Path, key: str) -> None:
    store = CredentialStore(tmp_path, CredentialCipher([key]))
    record = store.add("team-openai", "openai", {"key": SECRET, "organization": "org-canary-77"})
    assert record.id > 0 and record.fields == ("key", "organization")
    on_disk = store_files(tmp_path)
    assert b"team-openai" in on_disk  # the file is the one written (the name is not secret)
    assert SECRET.encode() not in on_disk
    assert b"org-canary-77" not in on_disk  # every field is sealed, not only "key"
    stored = store.get("team-openai")
    assert stored is not None and stored.value == {"key": SECRET, "organization": "org-canary-77"}
    assert SECRET not in repr(stored)
    assert store.get_by_id(record.id) == stored


def test_list_replace_and_remove(tmp_path: Path, key: str) -> None:
    store = CredentialStore(tmp_path, CredentialCipher([key]))
    first = store.add("a", "openai", {"key": "one"})
    store.add("b", "azure", {"subscription_key": "two", "endpoint": "http://127.0.0.1:1"})
    with pytest.raises(CredentialExists):
        store.add("a", "openai", {"key": "again"})
    replaced = store.add("a", "anthropic", {"key": "three"}, replace=True)
    assert replaced.id == first.id and replaced.provider == "anthropic"
    assert [(r.name, r.provider, r.fields) for r in store.list()] == [
        ("a", "anthropic", ("key",)),
        ("b", "azure", ("endpoint", "subscription_key")),
    ]
    assert store.remove("a") and not store.remove("a")
    assert store.get("a") is None and [r.name for r in store.list()] == ["b"]


@pytest.mark.parametrize("name", ["", "has space", "-leading", "a/b", "x" * 129])
def test_bad_names_are_refused(tmp_path: Path, key: str, name: str) -> None:
    with pytest.raises(ValueError, match="not a valid credential name"):
        CredentialStore(tmp_path, CredentialCipher([key])).add(name, "openai", {"key": "k"})


def test_key_rotation_with_old_keys_kept(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    CredentialStore(tmp_path, CredentialCipher([old])).add("c", "openai", {"key": SECRET})
    rotating = CredentialStore(tmp_path, CredentialCipher([new, old]))  # new first, old still decrypts
    assert rotating.get("c") is not None
    assert rotating.rotate() == 1
    only_new = CredentialStore(tmp_path, CredentialCipher([new]))
    stored = only_new.get("c")
    assert stored is not None and stored.value["key"] == SECRET
    with pytest.raises(CredentialKeyError):
        CredentialStore(tmp_path, CredentialCipher([old])).get("c")  # the old key alone no longer opens it


def test_a_wrong_or_malformed_key(tmp_path: Path, key: str) -> None:
    CredentialStore(tmp_path, CredentialCipher([key])).add("c", "openai", {"key": SECRET})
    with pytest.raises(CredentialKeyError, match="cannot be decrypted"):
        CredentialStore(tmp_path, CredentialCipher([generate_key()])).get("c")
    with pytest.raises(CredentialKeyError, match="#1 is not a Fernet key") as raised:
        CredentialCipher(["not-a-key"])
    assert "not-a-key" not in str(raised.value)
    with pytest.raises(CredentialKeyError, match="no credentials key"):
        CredentialCipher.from_setting(" , ")


def test_a_sealed_value_moved_to_another_row_is_refused(tmp_path: Path, key: str) -> None:
    """Someone who can write the file but has no key must not serve one credential's secret under another name."""
    store = CredentialStore(tmp_path, CredentialCipher([key]))
    store.add("low", "openai", {"key": "low-secret"})
    store.add("high", "openai", {"key": "high-secret"})
    with sqlite3.connect(store.path) as connection:
        connection.execute(
            "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE name = 'high') WHERE name = 'low'"
        )
    with pytest.raises(CredentialKeyError, match="does not belong to its row"):
        store.get("low")


def _add_many(data_dir: str, key: str, worker: int, count: int) -> None:
    store = CredentialStore(Path(data_dir), CredentialCipher([key]))
    for number in range(count):
        store.add(f"w{worker}-{number}", "openai", {"key": f"secret-{worker}-{number}"})
        store.add("shared", "openai", {"key": f"shared-{worker}-{number}"}, replace=True)


def test_several_processes_write_at_once(tmp_path: Path, key: str) -> None:
    workers, count = 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_add_many, args=(str(tmp_path), key, w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * workers
    store = CredentialStore(tmp_path, CredentialCipher([key]))
    names = {record.name for record in store.list()}
    assert names == {f"w{w}-{n}" for w in range(workers) for n in range(count)} | {"shared"}
    for w in range(workers):
        stored = store.get(f"w{w}-{count - 1}")
        assert stored is not None and stored.value == {"key": f"secret-{w}-{count - 1}"}
    shared = store.get("shared")
    assert shared is not None and str(shared.value["key"]).startswith("shared-")
