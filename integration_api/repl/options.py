"""`ReplOptions`: how the interactive `integration-api chat` starts (what the command line gave it)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_api.demo import Connection

DEFAULT_PING_INTERVAL_S = 15.0


@dataclass(frozen=True)
class ReplOptions:
    """The gateway to reach and the first session's provider, model, system prompt and request parameters.

    `parameters` are sent as ``model.<name>`` with every request (``--param`` and ``/param``); `ping_interval_s` is
    how often an idle REPL checks its stream (a PING) so that a lost connection is noticed and re-established
    before the next message (0: never); `history` is where typed lines are kept between runs (None: this run only).
    """

    connection: Connection
    provider: str = "simulated"
    model: str = ""
    system: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    credential_key: str | None = field(default=None, repr=False)
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    history: Path | None = None


def parse_value(text: str) -> Any:
    """A parameter value as typed: JSON when it parses (``200``, ``true``, ``[1, 2]``), otherwise the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items (``--param``) as parameters; ValueError names an item without ``=``."""
    parameters: dict[str, Any] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"--param {item!r}: write NAME=VALUE, e.g. simulated_delay_ms=200")
        parameters[name.strip().removeprefix("model.")] = parse_value(value)
    return parameters
