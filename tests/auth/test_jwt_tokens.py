"""Service tokens: HS256 only, exp required and enforced, organizationId and projectId required."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from auth import Principal, issue_service_token, verify_service_token
from integration_api.errors import Unauthenticated

SECRET = "a-jwt-secret-long-enough-for-every-hmac-algorithm-even-hs512-0123456789"
OTHER_SECRET = "another-secret-that-is-also-32-bytes-long"


def _token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"organizationId": "org", "projectId": "proj", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _rejected(token: str, secret: str = SECRET) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verify_service_token(token, secret)
    message = caught.value.message
    assert not token or token not in message
    assert message.startswith("x-internal-service-key was not accepted")
    return message


def test_issued_token_round_trips() -> None:
    token = issue_service_token(SECRET, "org", "proj", user_id="user-7")
    assert verify_service_token(token, SECRET) == Principal("org", "proj", user_id="user-7", method="jwt")


def test_user_is_optional() -> None:
    principal = verify_service_token(issue_service_token(SECRET, "org", "proj"), SECRET)
    assert principal.user_id is None and principal.method == "jwt" and principal.key_id is None


def test_issued_token_carries_the_protocol_claims() -> None:
    before = int(time.time())
    token = issue_service_token(SECRET, "org", "proj", user_id="u", ttl_s=120)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["organizationId"] == "org" and claims["projectId"] == "proj" and claims["userId"] == "u"
    assert before + 120 <= claims["exp"] <= int(time.time()) + 120
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        issue_service_token(SECRET, "org", "proj", ttl_s=0)


def test_externally_signed_token_is_accepted() -> None:
    principal = verify_service_token(_token(_claims(userId="u")), SECRET)
    assert principal == Principal("org", "proj", user_id="u", method="jwt")


def test_numeric_ids_are_accepted_as_strings() -> None:
    principal = verify_service_token(_token(_claims(organizationId=42, projectId=7, userId=9)), SECRET)
    assert (principal.organization_id, principal.project_id, principal.user_id) == ("42", "7", "9")


def test_expired_token_is_rejected() -> None:
    assert "expired" in _rejected(_token(_claims(exp=int(time.time()) - 600)))


def test_small_clock_skew_is_tolerated() -> None:
    assert verify_service_token(_token(_claims(exp=int(time.time()) - 2)), SECRET).project_id == "proj"


def test_exp_is_required() -> None:
    claims = _claims()
    del claims["exp"]
    assert "'exp'" in _rejected(_token(claims))


@pytest.mark.parametrize("claim", ["organizationId", "projectId"])
def test_organization_and_project_are_required(claim: str) -> None:
    claims = _claims()
    del claims[claim]
    assert repr(claim) in _rejected(_token(claims))


@pytest.mark.parametrize(
    ("claim", "value"),
    [("organizationId", ""), ("projectId", ["p"]), ("organizationId", True), ("userId", {"id": 1}), ("userId", "")],
)
def test_claims_of_the_wrong_type_are_rejected(claim: str, value: object) -> None:
    assert repr(claim) in _rejected(_token(_claims(**{claim: value})))


def test_wrong_secret_is_rejected() -> None:
    assert "signature" in _rejected(_token(_claims(), secret=OTHER_SECRET))


def test_alg_none_is_rejected() -> None:
    assert "HS256" in _rejected(jwt.encode(_claims(), "", algorithm="none"))


def test_other_hmac_algorithms_are_rejected() -> None:
    assert "HS256" in _rejected(_token(_claims(), algorithm="HS512"))


def test_tampered_payload_is_rejected() -> None:
    header, _, signature = _token(_claims()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(_claims(organizationId="evil")).encode()).rstrip(b"=").decode()
    _rejected(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x-api-key", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_tokens_are_rejected(token: str) -> None:
    _rejected(token)


def test_not_yet_valid_token_is_rejected() -> None:
    assert "not valid yet" in _rejected(_token(_claims(nbf=int(time.time()) + 600)))
