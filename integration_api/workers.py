"""Running the server in one process, or in N processes sharing the port (SO_REUSEPORT) so every core serves."""

from __future__ import annotations

import logging
import multiprocessing
import signal

from integration_api.event_loop import run_event_loop
from integration_api.logs import configure_logging
from integration_api.server import serve
from integration_api.settings import Settings

logger = logging.getLogger(__name__)


def run_one(settings: Settings) -> None:
    run_event_loop(serve(settings))


def _worker(settings: Settings) -> None:
    """A spawned worker: a fresh interpreter, which must set logging up again."""
    configure_logging(settings)
    run_one(settings)


def run_workers(settings: Settings) -> int:
    """Serve with `settings.workers` processes; SIGTERM/SIGINT reach every worker, each drains on its own.

    Returns the exit code: 0 when every worker exited cleanly or was stopped by SIGTERM (one still starting has no
    handler yet, and nothing to drain), else the first failing worker's code (1 if a signal killed it).
    """
    if settings.workers == 1:
        run_one(settings)
        return 0
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(settings,), daemon=False) for _ in range(settings.workers)]
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
    failed = [process.exitcode for process in processes if process.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        logger.error("%d of %d workers failed (exit codes %s)", len(failed), len(processes), failed)
    return next((code if code is not None and code > 0 else 1 for code in failed), 0)
