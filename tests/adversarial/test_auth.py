"""Authentication under attack: conflicting credentials, repeated headers, tokens that never expire, stale caches.

Every credential a call presents must be valid (a bad one never hides behind a good one), a header repeated with
two values is refused, a service token may not live longer than ``jwt_max_lifetime_s``, and a cached token is
refused the moment its ``exp`` passes. Time is a fake clock: no test waits for it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

import auth.authenticator as authenticator_module
from auth import ApiKeyStore, Authenticator, Principal, issue_service_token
from auth.authenticator import DEFAULT_CACHE_TTL_S, NO_JWT_SECRET
from auth.jwt_tokens import DEFAULT_LEEWAY_S, DEFAULT_MAX_LIFETIME_S, VerifiedToken, verify_token
from integration_api.errors import Unauthenticated
from integration_api.settings import Settings
from tests.conftest import JWT_SECRET, RunningGateway
from tests.grpc_helpers import chat_request

SECRET = "adversarial-auth-test-secret-long-enough"
NOW = 1_900_000_000.0  # the fake wall clock's start: seconds since the epoch

Metadata = list[tuple[str, str | bytes]]


class Clock:
    """One fake clock for both of the authenticator's: the cache's (monotonic) and the tokens' (wall)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore(tmp_path)


def _authenticator(tmp_path: Path, store: ApiKeyStore, clock: Clock, **settings: Any) -> Authenticator:
    values: dict[str, Any] = {"data_dir": tmp_path, "jwt_secret": SECRET, **settings}
    return Authenticator(Settings(**values), store=store, clock=clock, wall_clock=clock)


@pytest.fixture
def authenticator(tmp_path: Path, store: ApiKeyStore, clock: Clock) -> Authenticator:
    return _authenticator(tmp_path, store, clock)


def _token(secret: str = SECRET, **claims: Any) -> str:
    base: dict[str, Any] = {"organizationId": "org", "projectId": "proj", "iat": int(NOW), "exp": int(NOW) + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


async def _refused(authenticator: Authenticator, metadata: Metadata) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(metadata)
    return caught.value.message


# --- conflicting credentials -----------------------------------------------------------------------------------


async def test_a_bad_token_beside_a_good_key_is_refused(authenticator: Authenticator, store: ApiKeyStore) -> None:
    key, _ = store.create("k", "org", "proj")
    forged = _token(secret="some-other-secret-that-is-long-enough")
    message = await _refused(authenticator, [("x-api-key", key), ("x-internal-service-key", forged)])
    assert message.startswith("x-internal-service-key was not accepted") and forged not in message


async def test_an_expired_token_beside_a_good_key_is_refused(authenticator: Authenticator, store: ApiKeyStore) -> None:
    key, _ = store.create("k", "org", "proj")
    expired = _token(iat=int(NOW) - 7200, exp=int(NOW) - 3600)
    assert "expired" in await _refused(authenticator, [("x-internal-service-key", expired), ("x-api-key", key)])


async def test_a_bad_key_beside_a_good_token_is_refused(authenticator: Authenticator) -> None:
    message = await _refused(authenticator, [("x-internal-service-key", _token()), ("x-api-key", "ia_nope_nope")])
    assert message.startswith("x-api-key was not accepted")


async def test_a_token_the_server_cannot_verify_beside_a_good_key_is_refused(
    tmp_path: Path, store: ApiKeyStore, clock: Clock
) -> None:
    authenticator = _authenticator(tmp_path, store, clock, jwt_secret=None)
    key, _ = store.create("k", "org", "proj")
    assert await _refused(authenticator, [("x-api-key", key), ("x-internal-service-key", _token())]) == NO_JWT_SECRET


async def test_two_good_credentials_authenticate_as_the_key(authenticator: Authenticator, store: ApiKeyStore) -> None:
    key, record = store.create("k", "org", "proj")
    principal = await authenticator.authenticate([("x-internal-service-key", _token()), ("x-api-key", key)])
    assert principal.method == "api_key" and principal.key_id == record.key_id


@pytest.mark.parametrize("header", ["x-api-key", "x-internal-service-key"])
async def test_a_header_repeated_with_two_values_is_refused(
    authenticator: Authenticator, store: ApiKeyStore, header: str
) -> None:
    good = store.create("k", "org", "proj")[0] if header == "x-api-key" else _token()
    other = store.create("k2", "org2", "proj2")[0] if header == "x-api-key" else _token(organizationId="org2")
    for metadata in ([(header, good), (header, other)], [(header, good), (header.upper(), "garbage")]):
        message = await _refused(authenticator, metadata)  # type: ignore[arg-type]
        assert header in message and "different values" in message and good not in message


async def test_a_header_repeated_with_the_same_value_is_one_credential(
    authenticator: Authenticator, store: ApiKeyStore
) -> None:
    key, _ = store.create("k", "org", "proj")
    assert (await authenticator.authenticate([("x-api-key", key), ("X-Api-Key", key.encode())])).method == "api_key"


# --- token lifetime --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**30},  # never expires
        {"exp": 10**30, "iat": None},
        {"exp": int(NOW) + 10**6, "iat": int(NOW) + 10**6 - 60},  # a short "lifetime" issued in the future
        {"exp": int(NOW) + 2 * 86_400},  # iat now: two days
        {"exp": int(NOW) + 2 * 86_400, "iat": None},  # no iat: from now
        {"exp": int(NOW) + 600, "iat": int(NOW) - 2 * 86_400},  # issued two days before it expires
    ],
)
async def test_a_token_living_longer_than_the_limit_is_refused(
    authenticator: Authenticator, claims: dict[str, Any]
) -> None:
    message = await _refused(authenticator, [("x-internal-service-key", _token(**claims))])
    assert "lives longer" in message or "in the future" in message


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "9999999999"), ("exp", "soon"), ("exp", True), ("exp", [1]), ("iat", "0"), ("nbf", {"t": 0})],
)
async def test_a_time_claim_that_is_not_a_number_is_refused(
    authenticator: Authenticator, claim: str, value: object
) -> None:
    claims: dict[str, Any] = {claim: value}
    message = await _refused(authenticator, [("x-internal-service-key", _token(**claims))])
    assert repr(claim) in message and "number" in message


async def test_a_nan_exp_is_refused(authenticator: Authenticator) -> None:
    # JSON has no NaN, but Python's json module (and so PyJWT) reads one.
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(b'{"organizationId":"o","projectId":"p","exp":NaN}').decode()
    signing = jwt.api_jws.get_algorithm_by_name("HS256")
    signature = signing.sign(f"{header}.{payload}".encode(), signing.prepare_key(SECRET))
    token = f"{header}.{payload}.{jwt.utils.base64url_encode(signature).decode()}"
    assert "'exp'" in await _refused(authenticator, [("x-internal-service-key", token)])


async def test_a_missing_exp_is_refused(authenticator: Authenticator) -> None:
    assert "'exp'" in await _refused(authenticator, [("x-internal-service-key", _token(exp=None))])


async def test_tokens_within_the_limit_are_accepted(authenticator: Authenticator) -> None:
    assert DEFAULT_MAX_LIFETIME_S == 86_400.0
    for claims in ({"exp": int(NOW) + 86_400}, {"exp": int(NOW) + 86_400, "iat": None}, {"iat": int(NOW) + 5}):
        principal = await authenticator.authenticate([("x-internal-service-key", _token(**claims))])
        assert principal == Principal("org", "proj", method="jwt")


async def test_the_limit_is_a_setting(tmp_path: Path, store: ApiKeyStore, clock: Clock) -> None:
    assert Settings().jwt_max_lifetime_s == DEFAULT_MAX_LIFETIME_S
    authenticator = _authenticator(tmp_path, store, clock, jwt_max_lifetime_s=300)
    assert await authenticator.authenticate([("x-internal-service-key", _token(exp=int(NOW) + 300))])
    assert "300 s" in await _refused(authenticator, [("x-internal-service-key", _token(exp=int(NOW) + 301))])


async def test_the_time_checks_use_the_injected_clock(authenticator: Authenticator, clock: Clock) -> None:
    token = _token(iat=int(NOW), exp=int(NOW) + 60)
    clock.now = NOW - 3600  # before its iat: "issued in the future", whatever the real time is
    assert "in the future" in await _refused(authenticator, [("x-internal-service-key", token)])
    clock.now = NOW + 30
    assert (await authenticator.authenticate([("x-internal-service-key", token)])).method == "jwt"


# --- the verified-token cache ----------------------------------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the authenticator really verified (signature and claims), i.e. its cache misses."""
    real = verify_token
    seen: list[str] = []

    def counting(token: str, *args: Any, **kwargs: Any) -> VerifiedToken:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(authenticator_module, "verify_token", counting)
    return seen


async def test_a_verified_token_is_cached(authenticator: Authenticator, clock: Clock, verifications: list[str]) -> None:
    token = _token(exp=int(NOW) + 3600)
    for _ in range(5):
        await authenticator.authenticate([("x-internal-service-key", token)])
    assert len(verifications) == 1
    clock.now += DEFAULT_CACHE_TTL_S + 1
    await authenticator.authenticate([("x-internal-service-key", token)])
    assert len(verifications) == 2


async def test_a_cached_token_is_refused_as_soon_as_it_expires(
    authenticator: Authenticator, clock: Clock, verifications: list[str]
) -> None:
    token = _token(exp=int(NOW) + 5)
    assert (await authenticator.authenticate([("x-internal-service-key", token)])).method == "jwt"
    clock.now = NOW + 5 + DEFAULT_LEEWAY_S  # well within the cache's TTL
    assert "expired" in await _refused(authenticator, [("x-internal-service-key", token)])
    assert len(verifications) == 1  # refused from the cache entry itself
    assert "expired" in await _refused(authenticator, [("x-internal-service-key", token)])


async def test_failed_tokens_are_not_cached(authenticator: Authenticator, verifications: list[str]) -> None:
    token = _token(exp=10**30)
    for _ in range(3):
        await _refused(authenticator, [("x-internal-service-key", token)])
    assert len(verifications) == 3


def test_the_revocation_window_is_the_key_cache_ttl(tmp_path: Path, store: ApiKeyStore) -> None:
    settings = Settings(data_dir=tmp_path)
    assert Authenticator(settings, store=store).revocation_window_s == DEFAULT_CACHE_TTL_S == 30.0
    assert Authenticator(settings, store=store, cache_ttl_s=5).revocation_window_s == 5
    assert Authenticator(settings, store=store, cache_ttl_s=0).revocation_window_s == 0
    assert Authenticator(settings, store=store, cache_size=0).revocation_window_s == 0


# --- through a real gateway ------------------------------------------------------------------------------------


async def _refused_stream(gateway: RunningGateway, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    stream = gateway.open_stream(metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.send(chat_request("r", provider="probe"))
        await stream.read_to_end()
    return caught.value


async def test_gateway_refuses_a_forged_token_beside_a_good_key(gateway: RunningGateway) -> None:
    forged = issue_service_token("not-the-gateway-secret-but-long-enough", "org", "proj")
    error = await _refused_stream(gateway, (("x-api-key", gateway.api_key), ("x-internal-service-key", forged)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-internal-service-key" in (error.details() or "") and forged not in (error.details() or "")
    assert gateway.probe.started == []


async def test_gateway_refuses_a_key_repeated_with_two_values(gateway: RunningGateway) -> None:
    error = await _refused_stream(gateway, (("x-api-key", gateway.api_key), ("x-api-key", "ia_other_value")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "different values" in (error.details() or "")
    assert gateway.probe.started == []


async def test_gateway_refuses_a_token_that_never_expires(gateway: RunningGateway) -> None:
    forever = jwt.encode({"organizationId": "o", "projectId": "p", "exp": 10**30}, JWT_SECRET, "HS256")
    error = await _refused_stream(gateway, (("x-internal-service-key", forever),))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "lives longer" in (error.details() or "")
    ok = jwt.encode({"organizationId": "o", "projectId": "p", "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")
    stream = gateway.open_stream((("x-internal-service-key", ok),))
    await stream.send(chat_request("ok", "hello", provider="probe"))
    assert (await stream.read_until_done(["ok"])).terminal("ok").success
    assert gateway.probe.started == ["ok"]
