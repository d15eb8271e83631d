"""The web chat page: ``/`` serves static/index.html, ``/static/...`` its script and style sheet.

Entry point for app.py: ``page_routes() -> list[BaseRoute]`` (work in progress: none yet).
"""

from __future__ import annotations

from starlette.routing import BaseRoute


def page_routes() -> list[BaseRoute]:
    """The page's routes (work in progress: none yet)."""
    return []
