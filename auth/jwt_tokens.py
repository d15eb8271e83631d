"""Service tokens: the HS256 JWTs other backends send as ``x-internal-service-key``.

Claims: ``organizationId`` and ``projectId`` (required), ``userId`` (optional) and ``exp`` (required and
enforced). The algorithm is pinned to HS256, so ``alg: none`` and algorithm-confusion tokens are refused.
Failures raise `Unauthenticated` with a reason that never contains the token.

Times are checked here, against an injectable wall clock, not by PyJWT: ``exp``, ``nbf`` and ``iat`` must be
finite numbers (JSON's ``NaN`` or a string is refused), ``exp`` and ``nbf`` hold with ``leeway_s`` of clock skew,
``iat`` may not be in the future, and a token may not live longer than ``max_lifetime_s``: ``exp - iat`` when
it carries ``iat``, and in any case ``exp - now`` (so an ``exp`` of 10^30, a token that never expires, is
refused whatever its ``iat`` says).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from auth.principal import Principal
from integration_api.errors import Unauthenticated

ALGORITHM = "HS256"
DEFAULT_LEEWAY_S = 10.0
DEFAULT_MAX_LIFETIME_S = 86_400.0  # Settings.jwt_max_lifetime_s's default: a day
CLAIM_ORGANIZATION = "organizationId"
CLAIM_PROJECT = "projectId"
CLAIM_USER = "userId"

_HUMAN_MESSAGE = "The service token is not valid."

# Most specific first: InvalidSignatureError is a DecodeError, and every one is an InvalidTokenError.
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.InvalidSignatureError, "the signature does not match this server's JWT secret"),
    (jwt.InvalidAlgorithmError, f"the token is not signed with {ALGORITHM}"),
    (jwt.DecodeError, "the token is malformed"),
)


def _reason(error: jwt.InvalidTokenError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the required claim {error.claim!r} is missing"
    return next((reason for error_type, reason in _REASONS if isinstance(error, error_type)), "the token is not valid")


def _rejected(reason: str) -> Unauthenticated:
    return Unauthenticated(f"x-internal-service-key was not accepted: {reason}", human_message=_HUMAN_MESSAGE)


def _identifier(claims: dict[str, Any], name: str) -> str:
    """A claim as an id string; Go backends may encode numeric ids as JSON numbers, so ints are accepted."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _rejected(f"the claim {name!r} must be a non-empty string")
    return str(value)


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim; PyJWT's own check is off (it reads the real clock), so the type is checked here."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _rejected(f"the claim {name!r} must be a number of seconds since the epoch")
    return float(value)


def _check_times(claims: dict[str, Any], now: float, leeway_s: float, max_lifetime_s: float) -> float:
    """`exp`, after checking every time claim against `now`; raises `Unauthenticated` for a failed check."""
    expires_at = _time_claim(claims, "exp")
    assert expires_at is not None  # required by jwt.decode
    issued_at = _time_claim(claims, "iat")
    not_before = _time_claim(claims, "nbf")
    if expires_at + leeway_s <= now:
        raise _rejected("the token has expired")
    if not_before is not None and not_before - leeway_s > now:
        raise _rejected("the token is not valid yet")
    if issued_at is not None and issued_at - leeway_s > now:
        raise _rejected("the token's 'iat' is in the future")
    lifetime = max(expires_at - issued_at if issued_at is not None else 0.0, expires_at - now - leeway_s)
    if lifetime > max_lifetime_s:
        limit = f"{max_lifetime_s:g} s, INTEGRATION_API_JWT_MAX_LIFETIME_S"
        raise _rejected(f"the token lives longer than this server accepts ({limit}); issue shorter-lived tokens")
    return expires_at


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A service token that passed every check: who it names, and until when (``exp``, seconds since the epoch)."""

    principal: Principal
    expires_at: float


def verify_token(
    token: str,
    secret: str,
    *,
    leeway_s: float = DEFAULT_LEEWAY_S,
    max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    clock: Callable[[], float] = time.time,
) -> VerifiedToken:
    """The principal a valid service token names and its expiry; raises `Unauthenticated` otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "require": ["exp", CLAIM_ORGANIZATION, CLAIM_PROJECT],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as error:
        raise _rejected(_reason(error)) from error
    expires_at = _check_times(claims, clock(), leeway_s, max_lifetime_s)
    user_id = _identifier(claims, CLAIM_USER) if claims.get(CLAIM_USER) is not None else None
    principal = Principal(
        organization_id=_identifier(claims, CLAIM_ORGANIZATION),
        project_id=_identifier(claims, CLAIM_PROJECT),
        user_id=user_id,
        method="jwt",
    )
    return VerifiedToken(principal, expires_at)


def verify_service_token(
    token: str,
    secret: str,
    *,
    leeway_s: float = DEFAULT_LEEWAY_S,
    max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    clock: Callable[[], float] = time.time,
) -> Principal:
    """The principal a valid service token names; raises `Unauthenticated` otherwise."""
    return verify_token(token, secret, leeway_s=leeway_s, max_lifetime_s=max_lifetime_s, clock=clock).principal


def issue_service_token(
    secret: str,
    organization_id: str,
    project_id: str,
    user_id: str | None = None,
    ttl_s: int = 3600,
) -> str:
    """Sign a service token valid for `ttl_s` seconds (for tests and ``integration-api keys token``)."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {CLAIM_ORGANIZATION: organization_id, CLAIM_PROJECT: project_id, "iat": now}
    if user_id is not None:
        claims[CLAIM_USER] = user_id
    claims["exp"] = now + ttl_s
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
