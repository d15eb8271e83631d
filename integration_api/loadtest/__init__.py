"""Load generation for the gateway: the core of ``integration-api bench`` and of the repository's ``bench/``.

`run_load` drives one process's share of a `LoadConfig` (streams, lanes of requests on each, frames matched by
requestId) and fills a `LoadStats` (counts, errors by code, first/final-frame latency histograms) for the
requests completing inside a `Window`. `run_processes` spreads `LoadJob`s over client processes that share one
window and merges their statistics. `bench_command` is the typer command.

Names are imported on first use, so registering `bench_command` in the CLI does not import grpc or rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration_api.loadtest._command import bench as bench_command
    from integration_api.loadtest._config import DEFAULT_DURATION_S, LoadConfig
    from integration_api.loadtest._core import StartFn, error_code, meter_cpu, run_load
    from integration_api.loadtest._histogram import Histogram
    from integration_api.loadtest._requests import (
        open_channel,
        prompt_text,
        request_template,
        stream_chat_method,
        with_request_id,
    )
    from integration_api.loadtest._runner import GrpcLoad, LoadJob, run_event_loop, run_processes
    from integration_api.loadtest._stats import Budget, LoadStats, Window, latency_summary

_HOMES = {
    "bench_command": ("_command", "bench"),
    "DEFAULT_DURATION_S": ("_config", "DEFAULT_DURATION_S"),
    "LoadConfig": ("_config", "LoadConfig"),
    "StartFn": ("_core", "StartFn"),
    "error_code": ("_core", "error_code"),
    "meter_cpu": ("_core", "meter_cpu"),
    "run_load": ("_core", "run_load"),
    "Histogram": ("_histogram", "Histogram"),
    "open_channel": ("_requests", "open_channel"),
    "prompt_text": ("_requests", "prompt_text"),
    "request_template": ("_requests", "request_template"),
    "stream_chat_method": ("_requests", "stream_chat_method"),
    "with_request_id": ("_requests", "with_request_id"),
    "GrpcLoad": ("_runner", "GrpcLoad"),
    "LoadJob": ("_runner", "LoadJob"),
    "run_event_loop": ("_runner", "run_event_loop"),
    "run_processes": ("_runner", "run_processes"),
    "Budget": ("_stats", "Budget"),
    "LoadStats": ("_stats", "LoadStats"),
    "Window": ("_stats", "Window"),
    "latency_summary": ("_stats", "latency_summary"),
}

__all__ = [
    "DEFAULT_DURATION_S",
    "Budget",
    "GrpcLoad",
    "Histogram",
    "LoadConfig",
    "LoadJob",
    "LoadStats",
    "StartFn",
    "Window",
    "bench_command",
    "error_code",
    "latency_summary",
    "meter_cpu",
    "open_channel",
    "prompt_text",
    "request_template",
    "run_event_loop",
    "run_load",
    "run_processes",
    "stream_chat_method",
    "with_request_id",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value
