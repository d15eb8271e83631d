"""The vendor table against what it describes: the .proto's services, the emulators, the adapters' credentials.

And it stays import-light, since the client and the emulators import it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from integration_api.errors import InvalidArgument
from integration_api.proto import integration_api_pb2 as pb
from integration_api.services import PROVIDER_SERVICES, UNIFIED_SERVICE
from integration_api.sessions.service import SERVICE as SESSION_SERVICE
from integration_api.testing import emulators
from integration_api.testing.emulators.vertexai import VertexAIEmulator
from providers.base import ProviderEnv
from providers.registry import builtin_spec
from providers.vendors import VENDOR_NAMES, VENDORS, Vendor, vendor

ROOT = Path(__file__).resolve().parents[2]


def test_names_and_services_are_unique() -> None:
    assert len(set(VENDOR_NAMES)) == len(VENDORS) == len({v.service for v in VENDORS})
    assert [vendor(name).name for name in VENDOR_NAMES] == list(VENDOR_NAMES)


def test_every_per_provider_service_of_the_proto_is_a_vendor_and_is_served() -> None:
    in_proto = set(pb.DESCRIPTOR.services_by_name) - {UNIFIED_SERVICE, SESSION_SERVICE}
    assert {v.service for v in VENDORS} == in_proto
    assert {v.service: v.name for v in VENDORS} == PROVIDER_SERVICES


@pytest.mark.parametrize("entry", VENDORS, ids=VENDOR_NAMES)
def test_each_vendor_has_its_emulator(entry: Vendor) -> None:
    assert entry.name in emulators.VENDORS
    assert emulators.emulator_for(entry.name).vendor == entry.name


def test_fields_are_declared_once() -> None:
    for entry in VENDORS:
        assert len(set(entry.credential_fields)) == len(entry.credential_fields), entry.name


def _value(field: str) -> str:
    if field == "service_account_key":
        key = VertexAIEmulator().service_account_key("test-project")
        return json.dumps({**key, "token_uri": "https://oauth2.googleapis.com/token"})  # allowed; not called here
    return {"region": "us-central1", "project_id": "test-project", "endpoint": "http://127.0.0.1:9"}.get(field, "x")


@pytest.mark.parametrize("entry", VENDORS, ids=VENDOR_NAMES)
async def test_the_adapter_needs_exactly_the_required_fields(entry: Vendor, provider_env: ProviderEnv) -> None:
    factory = builtin_spec(entry.name).factory
    complete = {field: _value(field) for field in entry.required}
    assert factory(complete, provider_env).name == entry.name
    for missing in entry.required:
        with pytest.raises(InvalidArgument):
            factory({k: v for k, v in complete.items() if k != missing}, provider_env)


FORBIDDEN = ("grpc", "google", "pydantic", "integration_api.settings", "integration_api.client", "integration_api.proto",
             "openai", "anthropic", "mistralai", "cohere", "replicate", "aiohttp", "httpx")  # fmt: skip

PROBE = """
import json, sys
import providers.vendors
print(json.dumps(sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in sys.argv[1:]))))
"""


def test_importing_the_table_loads_no_sdk_grpc_protobuf_or_settings() -> None:
    # A fresh interpreter: this one has long since imported everything.
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *FORBIDDEN], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(completed.stdout) == []
