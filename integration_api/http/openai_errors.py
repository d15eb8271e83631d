"""`GatewayError` -> an OpenAI-shaped error: ``{"error": {"message", "type", "code", "param"}}`` and its HTTP status.

The OpenAI SDKs pick their exception class from the HTTP status alone (400 BadRequestError, 401
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409 ConflictError, 422, 429 RateLimitError,
>= 500 InternalServerError), so the status is what must be right; `type` and `code` follow OpenAI's own values
where one exists. An upstream 5xx (an `Unavailable` whose upstream answered 500/502) is a 502 Bad Gateway: the
gateway worked, its upstream did not; an upstream that is overloaded or unreachable stays 503. 429 and 503 carry
``retry-after`` when the upstream advised one.

In a stream that already started, the same body travels as one SSE ``data:`` event (no ``event:`` name, which is
what both SDKs read as an error and raise), and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import Response

from integration_api.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    GatewayError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

# Checked in order: subclasses before their bases (RequestTooLarge and ResponseTooLarge carry their own status).
_TYPES: tuple[tuple[type[GatewayError], str], ...] = (
    (Unauthenticated, "authentication_error"),
    (PermissionDenied, "permission_error"),
    (NotFound, "not_found_error"),
    (AlreadyExists, "conflict_error"),
    (ResourceExhausted, "rate_limit_error"),
    (DeadlineExceeded, "timeout_error"),
    (Unavailable, "service_unavailable"),
    (Unimplemented, "invalid_request_error"),
    (Cancelled, "cancelled"),
    (InvalidArgument, "invalid_request_error"),
    (Internal, "server_error"),
)
_CODES: dict[int, str] = {
    401: "invalid_api_key",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    501: "unsupported",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout",
}
_UPSTREAM_FAILED = frozenset({500, 502})


class OpenAIError(InvalidArgument):
    """A request refused by the OpenAI layer itself, with OpenAI's `code` and `param` (e.g. model_not_found)."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class ModelNotFound(NotFound):
    """`model` names no enabled provider."""

    code = "model_not_found"
    param = "model"


class UnknownPath(NotFound):
    """A path under /v1 that the API does not have."""

    code = "unknown_url"
    param = None


def http_status(error: GatewayError) -> int:
    if isinstance(error, Unavailable) and error.upstream_status in _UPSTREAM_FAILED:
        return 502
    if isinstance(error, Cancelled):
        return 499
    return error.http_status


def error_body(error: GatewayError) -> dict[str, Any]:
    status = http_status(error)
    kind = next((name for cls, name in _TYPES if isinstance(error, cls)), "server_error")
    code = getattr(error, "code", None) or _CODES.get(status)
    return {"error": {"message": error.message, "type": kind, "code": code, "param": getattr(error, "param", None)}}


def error_headers(error: GatewayError) -> dict[str, str]:
    if error.retry_after is None or error.retry_after < 0:
        return {}
    # retry-after is whole seconds; the SDKs also read retry-after-ms, which keeps the upstream's precision.
    return {"retry-after": str(math.ceil(error.retry_after)), "retry-after-ms": str(round(error.retry_after * 1000))}


def error_response(error: GatewayError) -> Response:
    return Response(
        orjson.dumps(error_body(error)),
        status_code=http_status(error),
        headers=error_headers(error),
        media_type="application/json",
    )


def sse_error_event(error: GatewayError) -> bytes:
    """The error as the last event of a started stream."""
    return b"data: " + orjson.dumps(error_body(error)) + b"\n\n"
