"""Wire-format emulators of the LLM vendors' HTTP APIs, for tests (ours and our users').

`emulator_for(vendor)` builds the emulator of one vendor of the vendor table (`providers.vendors`); each lives in
the module of the same name here and exposes its class as `EMULATOR`. `integration-api emulate <vendor> --port P`
runs one standalone.
"""

from __future__ import annotations

import importlib

from integration_api.testing.emulators.base import Emulator, Fault, RecordedRequest, Script, SSEItem, ToolCallScript
from providers import vendors

VENDORS = vendors.VENDOR_NAMES


def emulator_for(vendor: str, host: str = "127.0.0.1", port: int = 0) -> Emulator:
    if vendor not in VENDORS:
        raise ValueError(f"no emulator for {vendor!r}; known: {', '.join(VENDORS)}")
    module = importlib.import_module(vendors.vendor(vendor).emulator_module)
    emulator: Emulator = module.EMULATOR(host=host, port=port)
    return emulator


__all__ = ["VENDORS", "Emulator", "Fault", "RecordedRequest", "SSEItem", "Script", "ToolCallScript", "emulator_for"]
