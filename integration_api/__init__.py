"""integration-api: a gRPC gateway to every major LLM provider over one persistent, authenticated stream.

The client names are re-exported lazily: `providers/` and `auth/` import `integration_api.errors` and
`integration_api.settings`, and importing this package must not load the client (and with it gRPC and the
generated protobuf code) for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration_api.client import AsyncClient, Client, Credential

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "Credential", "__version__"]

_LAZY = {"AsyncClient", "Client", "Credential"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("integration_api.client"), name)
        globals()[name] = value  # cached: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
