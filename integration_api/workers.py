"""Running the server in one process, or in N processes sharing the port (SO_REUSEPORT) so every core serves."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal

from integration_api.server import serve
from integration_api.settings import Settings

logger = logging.getLogger(__name__)


def run_one(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))


def run_workers(settings: Settings) -> None:
    """Serve with `settings.workers` processes; SIGTERM/SIGINT reach every worker, each drains on its own."""
    if settings.workers == 1:
        run_one(settings)
        return
    if settings.port == 0:
        raise ValueError("--workers needs a fixed --port: processes can only share a port they all know")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_one, args=(settings,), daemon=False) for _ in range(settings.workers)]
    for process in processes:
        process.start()
    logger.info("started %d workers on port %d", len(processes), settings.port)

    def forward(_signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker drains within the grace period

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
