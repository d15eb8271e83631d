"""Service tokens: the HS256 JWTs other backends send as ``x-internal-service-key``.

Claims: ``organizationId`` and ``projectId`` (required), ``userId`` (optional) and ``exp`` (required and
enforced). The algorithm is pinned to HS256, so ``alg: none`` and algorithm-confusion tokens are refused.
Failures raise `Unauthenticated` with a reason that never contains the token.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from auth.principal import Principal
from integration_api.errors import Unauthenticated

ALGORITHM = "HS256"
DEFAULT_LEEWAY_S = 10.0
CLAIM_ORGANIZATION = "organizationId"
CLAIM_PROJECT = "projectId"
CLAIM_USER = "userId"

_HUMAN_MESSAGE = "The service token is not valid."

# Most specific first: InvalidSignatureError is a DecodeError, and every one is an InvalidTokenError.
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.InvalidSignatureError, "the signature does not match this server's JWT secret"),
    (jwt.InvalidAlgorithmError, f"the token is not signed with {ALGORITHM}"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
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


def verify_service_token(token: str, secret: str, *, leeway_s: float = DEFAULT_LEEWAY_S) -> Principal:
    """The principal a valid service token names; raises `Unauthenticated` otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", CLAIM_ORGANIZATION, CLAIM_PROJECT], "verify_exp": True},
            leeway=leeway_s,
        )
    except jwt.InvalidTokenError as error:
        raise _rejected(_reason(error)) from error
    user_id = _identifier(claims, CLAIM_USER) if claims.get(CLAIM_USER) is not None else None
    return Principal(
        organization_id=_identifier(claims, CLAIM_ORGANIZATION),
        project_id=_identifier(claims, CLAIM_PROJECT),
        user_id=user_id,
        method="jwt",
    )


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
