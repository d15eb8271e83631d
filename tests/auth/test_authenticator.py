"""The authenticator: precedence, messages, auth disabled, and a cache that never outlives a revoke."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import jwt
import pytest

import auth
from auth import ApiKeyStore, Authenticator, Principal, issue_service_token
from auth.authenticator import MISSING_CREDENTIALS
from integration_api.errors import Unauthenticated
from integration_api.gateway import Authenticator as GatewayAuthenticator
from integration_api.settings import Settings

SECRET = "authenticator-test-secret-that-is-long-enough"


class CountingStore(ApiKeyStore):
    """A real store that counts the verifications reaching SQLite and the threads they ran on."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.verify_calls = 0
        self.threads: list[threading.Thread] = []

    def verify(self, raw_key: str) -> Principal | None:
        self.verify_calls += 1
        self.threads.append(threading.current_thread())
        return super().verify(raw_key)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path, "jwt_secret": SECRET, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authenticator(tmp_path: Path, store: CountingStore, clock: FakeClock) -> Authenticator:
    return Authenticator(_settings(tmp_path), store=store, cache_ttl_s=30.0, clock=clock)


async def _refused(authenticator: Authenticator, metadata: list[tuple[str, str | bytes]] | None) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(metadata)
    return caught.value.message


def test_public_surface() -> None:
    assert set(auth.__all__) == {
        "ApiKeyRecord",
        "ApiKeyStore",
        "AuthMethod",
        "Authenticator",
        "Principal",
        "issue_service_token",
        "verify_service_token",
    }


def test_satisfies_the_gateways_protocol(authenticator: Authenticator) -> None:
    conforming: GatewayAuthenticator = authenticator
    assert conforming.disabled is False


def test_builds_its_own_store_from_settings(tmp_path: Path) -> None:
    Authenticator(_settings(tmp_path / "data"))
    assert (tmp_path / "data" / "api_keys.sqlite3").is_file()


async def test_api_key(authenticator: Authenticator, store: CountingStore) -> None:
    key, record = store.create("k", "org", "proj")
    principal = await authenticator.authenticate([("x-api-key", key)])
    assert principal == Principal("org", "proj", method="api_key", key_id=record.key_id)


async def test_store_runs_off_the_event_loop(authenticator: Authenticator, store: CountingStore) -> None:
    key, _ = store.create("k", "org", "proj")
    await authenticator.authenticate([("x-api-key", key)])
    assert store.threads and threading.main_thread() not in store.threads


async def test_service_token(authenticator: Authenticator) -> None:
    token = issue_service_token(SECRET, "org", "proj", user_id="u")
    principal = await authenticator.authenticate((("x-internal-service-key", token),))
    assert principal == Principal("org", "proj", user_id="u", method="jwt")


async def test_bytes_values_and_header_case_are_accepted(authenticator: Authenticator, store: CountingStore) -> None:
    key, _ = store.create("k", "org", "proj")
    assert (await authenticator.authenticate([("X-Api-Key", key.encode())])).method == "api_key"


async def test_api_key_takes_precedence_over_a_token(authenticator: Authenticator, store: CountingStore) -> None:
    key, record = store.create("k", "org", "proj")
    token = issue_service_token(SECRET, "other", "other")
    metadata: list[tuple[str, str | bytes]] = [("x-internal-service-key", token), ("x-api-key", key)]
    assert (await authenticator.authenticate(metadata)).key_id == record.key_id


async def test_a_bad_api_key_does_not_fall_back_to_the_token(authenticator: Authenticator) -> None:
    token = issue_service_token(SECRET, "org", "proj")
    message = await _refused(authenticator, [("x-api-key", "ia_nope_nope"), ("x-internal-service-key", token)])
    assert message.startswith("x-api-key was not accepted")


async def test_an_empty_api_key_counts_as_absent(authenticator: Authenticator) -> None:
    token = issue_service_token(SECRET, "org", "proj")
    principal = await authenticator.authenticate([("x-api-key", ""), ("x-internal-service-key", token)])
    assert principal.method == "jwt"


@pytest.mark.parametrize("metadata", [None, [], [("user-agent", "grpc-go/1.70")], [("x-api-key", "")]])
async def test_missing_credentials(authenticator: Authenticator, metadata: list[tuple[str, str | bytes]]) -> None:
    message = await _refused(authenticator, metadata)
    assert message == MISSING_CREDENTIALS
    assert message == "missing credentials: send x-api-key or x-internal-service-key metadata"


@pytest.mark.parametrize("key", ["ia_nope_nope", "garbage", "ia_" + "A" * 12 + "_" + "b" * 43])
async def test_rejected_key_message_never_contains_the_key(authenticator: Authenticator, key: str) -> None:
    message = await _refused(authenticator, [("x-api-key", key)])
    assert "x-api-key" in message and "not accepted" in message and key not in message


async def test_wrong_secret_for_a_real_key_id(authenticator: Authenticator, store: CountingStore) -> None:
    key, _ = store.create("k", "org", "proj")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    message = await _refused(authenticator, [("x-api-key", forged)])
    assert forged not in message and key[16:] not in message


async def test_non_ascii_bytes_are_rejected(authenticator: Authenticator) -> None:
    assert "ASCII" in await _refused(authenticator, [("x-api-key", b"\xff\xfe")])


async def test_expired_and_forged_tokens(authenticator: Authenticator) -> None:
    expired = jwt.encode({"organizationId": "o", "projectId": "p", "exp": int(time.time()) - 600}, SECRET, "HS256")
    message = await _refused(authenticator, [("x-internal-service-key", expired)])
    assert "expired" in message and expired not in message
    forged = issue_service_token("a-different-secret-of-sufficient-length", "o", "p")
    message = await _refused(authenticator, [("x-internal-service-key", forged)])
    assert "signature" in message and forged not in message


async def test_token_without_a_configured_secret(tmp_path: Path, store: CountingStore) -> None:
    authenticator = Authenticator(_settings(tmp_path, jwt_secret=None), store=store)
    token = issue_service_token(SECRET, "o", "p")
    message = await _refused(authenticator, [("x-internal-service-key", token)])
    assert "no JWT secret" in message and token not in message


async def test_an_empty_secret_counts_as_none(tmp_path: Path, store: CountingStore) -> None:
    authenticator = Authenticator(_settings(tmp_path, jwt_secret=""), store=store)
    token = issue_service_token(SECRET, "o", "p")
    assert "no JWT secret" in await _refused(authenticator, [("x-internal-service-key", token)])


async def test_auth_disabled_lets_everyone_in(tmp_path: Path, store: CountingStore) -> None:
    authenticator = Authenticator(_settings(tmp_path, auth_disabled=True), store=store)
    assert authenticator.disabled
    assert await authenticator.authenticate(None) == Principal.anonymous()
    assert (await authenticator.authenticate([("x-api-key", "garbage")])).method == "anonymous"
    assert store.verify_calls == 0


def test_auth_is_enabled_by_default(authenticator: Authenticator) -> None:
    assert not authenticator.disabled


async def test_a_revoked_key_is_rejected(authenticator: Authenticator, store: CountingStore) -> None:
    key, record = store.create("k", "org", "proj")
    await authenticator.authenticate([("x-api-key", key)])
    assert store.revoke(record.key_id)
    message = await _refused(authenticator, [("x-api-key", key)])
    assert key not in message


async def test_the_cache_spares_sqlite_within_its_ttl(
    authenticator: Authenticator, store: CountingStore, clock: FakeClock
) -> None:
    key, _ = store.create("k", "org", "proj")
    for _ in range(10):
        await authenticator.authenticate([("x-api-key", key)])
    assert store.verify_calls == 1
    clock.now += 31
    await authenticator.authenticate([("x-api-key", key)])
    assert store.verify_calls == 2


async def test_the_cache_does_not_outlive_a_revoke(
    authenticator: Authenticator, store: CountingStore, clock: FakeClock
) -> None:
    key, record = store.create("k", "org", "proj")
    other, _ = store.create("other", "org", "proj")
    await authenticator.authenticate([("x-api-key", key)])
    await authenticator.authenticate([("x-api-key", other)])
    clock.now += 1
    store.revoke(record.key_id)
    await _refused(authenticator, [("x-api-key", key)])
    assert (await authenticator.authenticate([("x-api-key", other)])).method == "api_key"
    assert store.verify_calls == 4


async def test_failures_are_not_cached(authenticator: Authenticator, store: CountingStore) -> None:
    for _ in range(3):
        await _refused(authenticator, [("x-api-key", "ia_" + "A" * 12 + "_" + "b" * 43)])
    assert store.verify_calls == 3


async def test_a_zero_ttl_disables_the_cache(tmp_path: Path, store: CountingStore) -> None:
    authenticator = Authenticator(_settings(tmp_path), store=store, cache_ttl_s=0)
    key, _ = store.create("k", "org", "proj")
    for _ in range(3):
        await authenticator.authenticate([("x-api-key", key)])
    assert store.verify_calls == 3


async def test_the_cache_is_bounded(tmp_path: Path, store: CountingStore) -> None:
    authenticator = Authenticator(_settings(tmp_path), store=store, cache_size=2)
    keys = [store.create(f"k{i}", "org", "proj")[0] for i in range(3)]
    for key in keys:
        await authenticator.authenticate([("x-api-key", key)])
    await authenticator.authenticate([("x-api-key", keys[0])])
    assert store.verify_calls == 4
    await authenticator.authenticate([("x-api-key", keys[0])])
    assert store.verify_calls == 4
