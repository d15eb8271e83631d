"""The API key store, on a real SQLite file in tmp_path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from auth import ApiKeyStore, Principal
from auth.api_keys import DB_FILENAME, hash_secret, parse_key


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore(tmp_path / "nested" / "data")


def test_creates_the_data_dir_and_the_database(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "a" / "b")
    assert store.path == tmp_path / "a" / "b" / DB_FILENAME
    assert store.path.is_file()


def test_created_key_has_the_documented_shape(store: ApiKeyStore) -> None:
    key, record = store.create("backend", "org-1", "proj-1")
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed
    assert key == f"ia_{key_id}_{secret}"
    assert key_id == record.key_id
    assert len(key_id) == 12 and key_id.isalnum()
    assert len(secret) == 43
    assert (record.name, record.organization_id, record.project_id) == ("backend", "org-1", "proj-1")
    assert record.created_at.tzinfo is not None and not record.revoked


def test_keys_are_unique(store: ApiKeyStore) -> None:
    keys = {store.create("k", "o", "p")[0] for _ in range(20)}
    assert len(keys) == 20


def test_verify_returns_the_keys_principal(store: ApiKeyStore) -> None:
    key, record = store.create("backend", "org-1", "proj-1")
    assert store.verify(key) == Principal("org-1", "proj-1", method="api_key", key_id=record.key_id)


def test_verify_survives_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    key, _ = ApiKeyStore(tmp_path).create("k", "o", "p")
    principal = ApiKeyStore(tmp_path).verify(key)
    assert principal is not None and principal.organization_id == "o"


def test_wrong_secret_is_rejected(store: ApiKeyStore) -> None:
    key, record = store.create("k", "o", "p")
    other_key, _ = store.create("k2", "o", "p")
    _, other_secret = parse_key(other_key) or ("", "")
    assert store.verify(f"ia_{record.key_id}_{other_secret}") is None
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None


def test_unknown_key_id_is_rejected(store: ApiKeyStore) -> None:
    key, _ = store.create("k", "o", "p")
    assert store.verify("ia_" + "Z" * 12 + key[15:]) is None


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ia_",
        "ia_nope_nope",
        "not-a-key",
        "sk-" + "a" * 48,
        "ia_" + "a" * 12 + "_",
        "ia_" + "a" * 12 + "_" + "b" * 42,
        "ia_" + "a" * 12 + "_" + "b" * 44,
        "ia_" + "a_" * 6 + "_" + "b" * 43,
        "IA_" + "a" * 12 + "_" + "b" * 43,
        "ia_" + "a" * 12 + "_" + "b" * 42 + "=",
        "ia_" + "a" * 12 + "_" + "b" * 43 + "\n",
        "ia_" + "é" * 12 + "_" + "b" * 43,
    ],
)
def test_malformed_keys_are_rejected(store: ApiKeyStore, raw: str) -> None:
    assert parse_key(raw) is None
    assert store.verify(raw) is None


def test_list_returns_records_without_hashes(store: ApiKeyStore) -> None:
    _, first = store.create("first", "o", "p")
    _, second = store.create("second", "o2", "p2")
    records = store.list()
    assert [record.key_id for record in records] == [first.key_id, second.key_id]
    assert records[0] == first
    assert not any(hasattr(record, "secret_hash") for record in records)


def test_list_of_an_empty_store(store: ApiKeyStore) -> None:
    assert store.list() == []


def test_revoke(store: ApiKeyStore) -> None:
    key, record = store.create("k", "o", "p")
    generation = store.generation
    assert store.revoke(record.key_id) is True
    assert store.generation == generation + 1
    assert store.verify(key) is None
    revoked = store.get(record.key_id)
    assert revoked is not None and revoked.revoked and revoked.revoked_at is not None
    assert store.revoke(record.key_id) is False
    assert store.revoke("no-such-key") is False
    assert store.generation == generation + 1


def test_revoking_one_key_leaves_the_others(store: ApiKeyStore) -> None:
    kept, _ = store.create("kept", "o", "p")
    _, gone = store.create("gone", "o", "p")
    store.revoke(gone.key_id)
    assert store.verify(kept) is not None


def test_only_a_hash_of_the_secret_is_stored(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    keys = [store.create(f"k{i}", "o", "p")[0] for i in range(5)]
    store.revoke(store.list()[0].key_id)
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    for key in keys:
        key_id, secret = parse_key(key) or ("", "")
        assert key.encode() not in raw
        assert secret.encode() not in raw
        assert hash_secret(secret).encode() in raw
        assert key_id.encode() in raw


def test_concurrent_use_from_threads(store: ApiKeyStore) -> None:
    key, _ = store.create("k", "o", "p")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert store.verify(key) is not None
                store.create("t", "o", "p")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list()) == 1 + 8 * 20
