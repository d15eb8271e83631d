"""Logging of `integration-api serve`, set up in one place (each `--workers` process calls it for itself).

``log_level`` sets our own loggers (``integration_api``, ``providers``, ``auth``); ``log_level_third_party`` sets
everything else (grpc, asyncio, aiohttp, httpx/httpcore, the vendor SDKs), through the root logger: at DEBUG those
log every frame and connection, and would bury ours. ``log_format`` is text (for a terminal) or JSON lines.
"""

from __future__ import annotations

import logging

from integration_api.settings import Settings

OUR_LOGGERS = ("integration_api", "providers", "auth")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """One stderr handler on the root logger at the third-party level; our loggers at `settings.log_level`."""
    # force: replace whatever an import may have installed, so calling it again (a worker, a test) is harmless.
    logging.basicConfig(level=settings.log_level_third_party, format=FORMAT, force=True)
    if settings.log_format == "json":  # one JSON object per line (integration_api.observability.json_logs)
        from integration_api.observability.json_logs import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
