"""Import layering: the error tree, settings, `providers` basics and `auth` load without the client or vendor SDKs.

`providers/` and `auth/` sit below the client and the server. Importing them must not drag in gRPC, protobuf, the
generated code, the client package or any vendor SDK: that is what keeps the client install light and lets the
server preload SDKs only when it decides to. Each case runs in a fresh interpreter, since this test process has
long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LOW_LAYER_MODULES = (
    "providers.parameters",
    "providers.base",
    "providers.types",
    "auth",
    "integration_api.errors",
    "integration_api.settings",
)

FORBIDDEN = (
    "grpc",
    "google.protobuf",
    "integration_api.proto",
    "integration_api.client",
    "openai",
    "anthropic",
    "google.genai",
    "mistralai",
    "cohere",
    "replicate",
)

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
forbidden = sys.argv[2:]
print(json.dumps(sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))))
"""


def loaded_forbidden(statement_module: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, statement_module, *FORBIDDEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: list[str] = json.loads(completed.stdout)
    return found


@pytest.mark.parametrize("module", LOW_LAYER_MODULES)
def test_low_layer_module_loads_no_client_protobuf_or_sdk(module: str) -> None:
    assert loaded_forbidden(module) == []


def test_importing_the_package_loads_no_client() -> None:
    assert loaded_forbidden("integration_api") == []


def test_public_names_still_resolve_lazily() -> None:
    import integration_api
    from integration_api import AsyncClient, Client, Credential
    from integration_api.client import AsyncClient as ClientAsyncClient

    assert AsyncClient is ClientAsyncClient
    assert {AsyncClient.__name__, Client.__name__, Credential.__name__} <= set(integration_api.__all__)
    assert integration_api.__version__
    with pytest.raises(AttributeError):
        _ = integration_api.NoSuchName
