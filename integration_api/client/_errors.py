"""Every exception the client raises, in one tree.

Failures reported by the gateway (an error frame on a stream, a gRPC status on a unary call) and failures of the
connection itself are all `APIError`s: one class per meaning, each carrying the gRPC `status` name, the protocol's
HTTP-like `code`, the `message`, the request id when there is one, and whether sending the same request again
later may succeed (`retryable`, with the server's `retry_after` advice in seconds). Lower-layer errors (gRPC) are
mapped once, in ``_transport.map_grpc_errors``; nothing here depends on gRPC.

    IntegrationAPIError                  anything this package raises on purpose
    ├── ClientDisabledError              INTEGRATION_API_ENABLED=false: the real client refuses to connect
    ├── IncompatibleServerError          the gateway's protocol revision does not fit this client's
    ├── StreamClosedError                the stream (or client) was closed before the request finished
    └── APIError                         the gateway or the connection reported a failure
        ├── BadRequestError              INVALID_ARGUMENT    400
        │   └── RequestTooLargeError     INVALID_ARGUMENT    413  refused by the client: over the message limit
        ├── AuthenticationError          UNAUTHENTICATED     401
        ├── PermissionDeniedError        PERMISSION_DENIED   403
        ├── NotFoundError                NOT_FOUND           404
        ├── ConflictError                ALREADY_EXISTS      409
        ├── RequestCancelledError        CANCELLED           499
        ├── RateLimitError               RESOURCE_EXHAUSTED  429  retryable
        ├── APITimeoutError              DEADLINE_EXCEEDED   504  retryable
        ├── ServiceUnavailableError      UNAVAILABLE         503  retryable
        │   └── APIConnectionError       the gateway could not be reached, or the connection broke
        │       └── StreamInterruptedError   the stream broke after this request had produced output
        ├── UnimplementedError           UNIMPLEMENTED       501
        └── InternalServerError          INTERNAL (and anything unknown)  500
"""

from __future__ import annotations

from typing import ClassVar


class IntegrationAPIError(Exception):
    """Base of every exception the integration-api client raises on purpose."""


class ClientDisabledError(IntegrationAPIError):
    """The environment says ``INTEGRATION_API_ENABLED=false``: this process must not reach a real gateway."""


class IncompatibleServerError(IntegrationAPIError):
    """The gateway and this client cannot work together; the message names both protocol revisions."""

    def __init__(self, message: str, *, server_revision: int | None, client_revision: int) -> None:
        super().__init__(message)
        self.server_revision = server_revision
        self.client_revision = client_revision


class StreamClosedError(IntegrationAPIError):
    """The stream or client was closed (by this process) before the request finished, or is used after close."""


class APIError(IntegrationAPIError):
    """A failure reported by the gateway or by the connection to it.

    Attributes: `status` (gRPC status name, e.g. ``"RESOURCE_EXHAUSTED"``), `code` (the protocol's HTTP-like
    number, e.g. 429), `message` (technical), `human_message` (fit to show a person, when the gateway gave one),
    `retryable` (the same request may succeed if sent again later), `retry_after` (seconds to wait, when the
    gateway advised it) and `request_id` (for errors of one chat request).
    """

    status: ClassVar[str] = "UNKNOWN"
    default_code: ClassVar[int] = 500
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        human_message: str = "",
        retryable: bool | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.code = code if code else self.default_code
        self.human_message = human_message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        about = f" (request {self.request_id!r})" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{about}"

    def copy(self, *, request_id: str | None = None) -> APIError:
        """The same error as a new exception object (one per request that fails with it)."""
        return type(self)(
            self.message,
            code=self.code,
            human_message=self.human_message,
            retryable=self.retryable,
            retry_after=self.retry_after,
            request_id=request_id if request_id is not None else self.request_id,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, retryable={self.retryable})"


class BadRequestError(APIError):
    status = "INVALID_ARGUMENT"
    default_code = 400


class RequestTooLargeError(BadRequestError):
    """The serialized request is over the largest message the gateway accepts, so the client did not send it.

    gRPC would refuse it for the whole call: every other request on the stream would fail with it. `size` and
    `limit` are in bytes (the limit is the client's `max_message_bytes`, which should match the gateway's).
    """

    default_code = 413

    def __init__(
        self,
        message: str,
        *,
        size: int = 0,
        limit: int = 0,
        code: int | None = None,
        human_message: str = "",
        retryable: bool | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            message,
            code=code,
            human_message=human_message,
            retryable=retryable,
            retry_after=retry_after,
            request_id=request_id,
        )

    def copy(self, *, request_id: str | None = None) -> APIError:
        return RequestTooLargeError(
            self.message,
            size=self.size,
            limit=self.limit,
            code=self.code,
            human_message=self.human_message,
            retryable=self.retryable,
            retry_after=self.retry_after,
            request_id=request_id if request_id is not None else self.request_id,
        )


class AuthenticationError(APIError):
    status = "UNAUTHENTICATED"
    default_code = 401


class PermissionDeniedError(APIError):
    status = "PERMISSION_DENIED"
    default_code = 403


class NotFoundError(APIError):
    status = "NOT_FOUND"
    default_code = 404


class ConflictError(APIError):
    status = "ALREADY_EXISTS"
    default_code = 409


class RequestCancelledError(APIError):
    status = "CANCELLED"
    default_code = 499


class RateLimitError(APIError):
    status = "RESOURCE_EXHAUSTED"
    default_code = 429
    default_retryable = True


class APITimeoutError(APIError):
    status = "DEADLINE_EXCEEDED"
    default_code = 504
    default_retryable = True


class ServiceUnavailableError(APIError):
    status = "UNAVAILABLE"
    default_code = 503
    default_retryable = True


class APIConnectionError(ServiceUnavailableError):
    """The gateway could not be reached, or the connection to it broke; always retryable."""


class StreamInterruptedError(APIConnectionError):
    """The stream broke after this request had produced output; it was not replayed. Send it again to retry."""


class UnimplementedError(APIError):
    status = "UNIMPLEMENTED"
    default_code = 501


class InternalServerError(APIError):
    status = "INTERNAL"
    default_code = 500


_CLASSES: tuple[type[APIError], ...] = (
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    ConflictError,
    RequestCancelledError,
    RateLimitError,
    APITimeoutError,
    ServiceUnavailableError,
    UnimplementedError,
    InternalServerError,
)
_BY_STATUS: dict[str, type[APIError]] = {cls.status: cls for cls in _CLASSES} | {
    "FAILED_PRECONDITION": BadRequestError,
    "OUT_OF_RANGE": BadRequestError,
    "ABORTED": ConflictError,
}
_BY_CODE: dict[int, type[APIError]] = {cls.default_code: cls for cls in _CLASSES} | {408: APITimeoutError}


def error_class_for_status(status: str) -> type[APIError]:
    """The exception class for a gRPC status name (unknown names: `InternalServerError`)."""
    return _BY_STATUS.get(status, InternalServerError)


def error_class_for_code(code: int) -> type[APIError]:
    """The exception class for an HTTP-like code, for old servers whose errors carry no status name."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if 400 <= code < 500:
        return BadRequestError
    if code in (502, 529):
        return ServiceUnavailableError
    return InternalServerError
