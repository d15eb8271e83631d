"""The gateway's one error hierarchy.

Every failure the gateway reports is a `GatewayError`. Lower layers (vendor SDKs, HTTP, auth, request
validation) are translated into it once, at their edge, with ``raise SomeGatewayError(...) from exc``; the
engine then turns it into an error frame (streams) or a gRPC status (unary RPCs). Nothing here depends on
gRPC: the status is carried by name and mapped to ``grpc.StatusCode`` in ``integration_api.status``.

    GatewayError
    ├── InvalidArgument        400  INVALID_ARGUMENT
    ├── FailedPrecondition     400  FAILED_PRECONDITION  (e.g. a session of one provider used on another's service)
    ├── Unauthenticated        401  UNAUTHENTICATED
    ├── PermissionDenied       403  PERMISSION_DENIED
    ├── NotFound               404  NOT_FOUND
    ├── AlreadyExists          409  ALREADY_EXISTS
    ├── Aborted                409  ABORTED              (retryable: a concurrent change won, e.g. to a session)
    ├── Cancelled              499  CANCELLED
    ├── ResourceExhausted      429  RESOURCE_EXHAUSTED   (retryable, may carry retry_after)
    │   └── ResponseTooLarge   413  RESOURCE_EXHAUSTED   (not retryable: the reply outgrew the message size)
    ├── DeadlineExceeded       504  DEADLINE_EXCEEDED    (retryable)
    ├── Unavailable            503  UNAVAILABLE          (retryable, may carry retry_after)
    ├── Unimplemented          501  UNIMPLEMENTED
    └── Internal               500  INTERNAL
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of every error the gateway reports to a client.

    `message` is technical and safe to log (it never contains a credential); `human_message` is fit to
    show a person. `retry_after` (seconds) is the upstream's advice, when it gave one.
    """

    http_status: ClassVar[int] = 500
    status: ClassVar[str] = "INTERNAL"
    retryable: ClassVar[bool] = False
    default_human_message: ClassVar[str] = "The request failed."

    def __init__(
        self,
        message: str,
        *,
        human_message: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        provider_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.human_message = human_message or self.default_human_message
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        self.provider_request_id = provider_request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidArgument(GatewayError):
    http_status = 400
    status = "INVALID_ARGUMENT"
    default_human_message = "The request is not valid."


class FailedPrecondition(GatewayError):
    """The request is valid, but not in the state the system is in (a session bound to another provider)."""

    http_status = 400
    status = "FAILED_PRECONDITION"
    default_human_message = "The request does not fit the current state of what it names."


class Unauthenticated(GatewayError):
    http_status = 401
    status = "UNAUTHENTICATED"
    default_human_message = "The credentials were missing or not accepted."


class PermissionDenied(GatewayError):
    http_status = 403
    status = "PERMISSION_DENIED"
    default_human_message = "This is not allowed with the given credentials."


class NotFound(GatewayError):
    http_status = 404
    status = "NOT_FOUND"
    default_human_message = "The requested model or resource does not exist."


class AlreadyExists(GatewayError):
    http_status = 409
    status = "ALREADY_EXISTS"
    default_human_message = "A request with this id is already in flight."


class Aborted(GatewayError):
    """Lost to a concurrent change (another request on the same session elsewhere committed first)."""

    http_status = 409
    status = "ABORTED"
    retryable = True
    default_human_message = "Another change happened at the same time; send the request again."


class Cancelled(GatewayError):
    http_status = 499
    status = "CANCELLED"
    default_human_message = "The request was cancelled."


class ResourceExhausted(GatewayError):
    http_status = 429
    status = "RESOURCE_EXHAUSTED"
    retryable = True
    default_human_message = "The provider's rate limit was reached; try again shortly."


class ResponseTooLarge(ResourceExhausted):
    """A reply whose final frame would exceed the message size limit (its deltas were all delivered)."""

    http_status = 413
    retryable = False
    default_human_message = "The reply was too large to send as one message."


class DeadlineExceeded(GatewayError):
    http_status = 504
    status = "DEADLINE_EXCEEDED"
    retryable = True
    default_human_message = "The provider took too long to answer."


class Unavailable(GatewayError):
    http_status = 503
    status = "UNAVAILABLE"
    retryable = True
    default_human_message = "The provider is unavailable or overloaded; try again shortly."


class Unimplemented(GatewayError):
    http_status = 501
    status = "UNIMPLEMENTED"
    default_human_message = "This operation is not supported by this provider."


class Internal(GatewayError):
    http_status = 500
    status = "INTERNAL"
    default_human_message = "The gateway failed unexpectedly."


_BY_HTTP_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    408: DeadlineExceeded,
    409: AlreadyExists,
    413: InvalidArgument,
    422: InvalidArgument,
    429: ResourceExhausted,
    499: Cancelled,
    500: Unavailable,
    501: Unimplemented,
    502: Unavailable,
    503: Unavailable,
    504: DeadlineExceeded,
    529: Unavailable,
}


def error_for_http_status(status: int) -> type[GatewayError]:
    """The gateway error class an upstream HTTP status maps to (unknown 4xx -> InvalidArgument, 5xx -> Unavailable)."""
    if status in _BY_HTTP_STATUS:
        return _BY_HTTP_STATUS[status]
    if 400 <= status < 500:
        return InvalidArgument
    if status >= 500:
        return Unavailable
    return Internal


def from_http_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    provider_request_id: str | None = None,
) -> GatewayError:
    """Build the gateway error for an upstream HTTP status; adapters call this at their edge."""
    cls = error_for_http_status(status)
    return cls(message, retry_after=retry_after, upstream_status=status, provider_request_id=provider_request_id)
