"""The price table: what a request cost, in US dollars, from its provider, model and token usage.

The table ships as data (``prices.toml`` beside this module, in US dollars per million tokens); the
`price_table_file` setting names a TOML file of the same shape whose entries replace or extend it. Costs are
counted in whole nano-dollars (10^-9 USD) so that budgets are integers that Redis can add atomically, exactly,
and a single token of the cheapest model still counts.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

from providers.types import Usage

logger = logging.getLogger(__name__)

NANO_USD = 1_000_000_000
_MAX_WARNED = 1024  # distinct unpriced models logged, at most


class PriceTableError(ValueError):
    """A price table file that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost_nano_usd(self, usage: Usage) -> int:
        # per million tokens * 1e9 nano-dollars = per token * 1000
        return round(
            (usage.input_tokens * self.input_per_million + usage.output_tokens * self.output_per_million) * 1000
        )


def _parse(table: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    parsed: dict[str, dict[str, Any]] = {}
    for provider, entries in table.items():
        if not isinstance(entries, dict):
            raise PriceTableError(f"{source}: [{provider}] must be a table of models")
        models: dict[str, Any] = {}
        for model, value in entries.items():
            if model == "same_as":
                if not isinstance(value, str):
                    raise PriceTableError(f"{source}: [{provider}] same_as must name a provider")
                models[model] = value
                continue
            try:
                models[model] = Price(float(value["input"]), float(value["output"]))
            except (TypeError, KeyError, ValueError) as exc:
                raise PriceTableError(
                    f"{source}: [{provider}] {model!r} must be {{ input = <USD per 1M>, output = <USD per 1M> }}"
                ) from exc
        parsed[provider] = models
    return parsed


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise PriceTableError(f"cannot read the price table {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"the price table {path} is not valid TOML: {exc}") from exc


class PriceTable:
    """Prices by provider and model; `price` matches a model exactly, else by the longest matching glob."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self._entries = entries
        self._cache: dict[tuple[str, str], Price | None] = {}
        self._warned: set[tuple[str, str]] = set()

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The shipped table, with `override`'s entries on top (per provider, per model)."""
        shipped = tomllib.loads(resources.files(__package__).joinpath("prices.toml").read_text("utf-8"))
        entries = _parse(shipped, "prices.toml")
        if override is not None:
            for provider, models in _parse(_read(override), str(override)).items():
                entries.setdefault(provider, {}).update(models)
        return cls(entries)

    def _lookup(self, provider: str, model: str, seen: frozenset[str] = frozenset()) -> Price | None:
        entries = self._entries.get(provider, {})
        exact = entries.get(model)
        if isinstance(exact, Price):
            return exact
        globs = [
            pattern for pattern, value in entries.items() if isinstance(value, Price) and fnmatchcase(model, pattern)
        ]
        if globs:
            return entries[max(globs, key=len)]  # type: ignore[no-any-return]
        parent = entries.get("same_as")
        if isinstance(parent, str) and parent not in seen:
            return self._lookup(parent, model, seen | {provider})
        return None

    def price(self, provider: str, model: str) -> Price | None:
        key = (provider, model)
        if key not in self._cache:
            if len(self._cache) > 4 * _MAX_WARNED:
                self._cache.clear()
            self._cache[key] = self._lookup(provider, model)
        return self._cache[key]

    def cost_nano_usd(self, provider: str, model: str, usage: Usage) -> int:
        """What `usage` cost (0 for a model without a price, logged once per model)."""
        price = self.price(provider, model)
        if price is None:
            if (provider, model) not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add((provider, model))
                logger.warning(
                    "no price for %s model %r: its requests count 0 toward currency budgets"
                    " (add it to the file price_table_file names)",
                    provider,
                    model,
                )
            return 0
        return price.cost_nano_usd(usage)
