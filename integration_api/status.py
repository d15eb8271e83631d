"""Gateway errors as gRPC statuses, with `google.rpc` details (RetryInfo, ErrorInfo) where they help."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from integration_api.errors import GatewayError

ERROR_DOMAIN = "integration-api"


def grpc_code(error: GatewayError) -> grpc.StatusCode:
    return grpc.StatusCode[error.status]


def rich_status(error: GatewayError) -> grpc.Status:
    """A grpc.Status for `error`: its code, message, ErrorInfo and, when known, RetryInfo."""
    details = [_packed(error_details_pb2.ErrorInfo(
        reason=error.status,
        domain=ERROR_DOMAIN,
        metadata={"http_status": str(error.http_status), "retryable": str(error.retryable).lower()},
    ))]  # fmt: skip
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    message = status_pb2.Status(code=getattr(code_pb2, error.status), message=error.message, details=details)
    return rpc_status.to_status(message)


def _packed(message: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
