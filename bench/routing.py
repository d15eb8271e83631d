"""The routing rows: (r) a route of one simulated target, to compare with no route (b); (h) a hedged route whose
first target's first token takes 500 ms, with ``hedge_after_ms = 100``, to compare with the fast target's own.

(h)'s first target is the simulated provider with a 500 ms delay before each word: it never wins (the hedge starts
at 100 ms and the fast target answers at once), so it is cancelled each time, and the figure is the cost of hedging
beyond its configured delay: (h) first-frame p50 - 100 ms - (r) first-frame p50.
"""

from __future__ import annotations

import json
from typing import Any

HEDGE_AFTER_MS = 100.0
SLOW_FIRST_TOKEN_MS = 500


def one_target_settings() -> dict[str, str]:
    return {"INTEGRATION_API_ROUTES": json.dumps({"one": {"targets": [{"provider": "simulated", "model": "echo"}]}})}


def hedged_settings() -> dict[str, str]:
    routes = {
        "hedged": {
            "hedge_after_ms": HEDGE_AFTER_MS,
            "hedge_budget_percent": 100,
            "targets": [
                {"provider": "simulated", "model": "slow",
                 "parameters": {"model.simulated_delay_ms": SLOW_FIRST_TOKEN_MS}},
                {"provider": "simulated", "model": "fast"},
            ],
        }
    }  # fmt: skip
    return {"INTEGRATION_API_ROUTES": json.dumps(routes)}


def hedge_overhead_ms(rows: dict[tuple[str, int], dict[str, Any]], memory: list[dict[str, Any]]) -> float | None:
    hedged, fast = rows.get(("h", 1)), rows.get(("r", 1))
    if hedged is None or fast is None:
        return None
    return float(hedged["first_frame_ms"]["p50"] - HEDGE_AFTER_MS - fast["first_frame_ms"]["p50"])
