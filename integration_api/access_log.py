"""One access-log line per request, at INFO, on the `integration_api.access` logger.

Every RPC that serves a request records it here once, when its terminal answer is known: request id, stream id,
rpc, principal, provider, model, status, time to first output and total time. Nothing secret is in it (the
principal carries no secret, and neither do model names or gateway error statuses). The same fields are passed
as the record's `extra`, for structured (JSON) log handlers.
"""

from __future__ import annotations

import logging
import time

from integration_api.context import RequestContext

logger = logging.getLogger("integration_api.access")


def record(context: RequestContext, status: str, code: int, first_output_ns: int = 0) -> None:
    """Log the end of one request; `first_output_ns` is the perf_counter_ns of its first output (0: none)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    total_ms = (time.perf_counter_ns() - context.started_ns) / 1e6
    ttft_ms = (first_output_ns - context.started_ns) / 1e6 if first_output_ns else None
    fields = {
        "request_id": context.request_id,
        "stream_id": context.stream_id,
        "rpc": context.rpc,
        "principal": context.principal.describe(),
        "provider": context.provider,
        "model": context.model,
        "status": status,
        "code": code,
        "ttft_ms": None if ttft_ms is None else round(ttft_ms, 3),
        "total_ms": round(total_ms, 3),
    }
    logger.info(
        "request=%s stream=%s rpc=%s principal=[%s] provider=%s model=%s status=%s code=%d ttft_ms=%s total_ms=%.3f",
        context.request_id or "-",
        context.stream_id,
        context.rpc,
        fields["principal"],
        context.provider,
        context.model or "-",
        status,
        code,
        "-" if ttft_ms is None else f"{ttft_ms:.3f}",
        total_ms,
        extra={"access": fields},
    )
