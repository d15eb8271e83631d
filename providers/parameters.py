"""Typed, consuming access to a request's ``model.*`` parameters.

Adapters read each parameter they support through a `ParameterReader`, with the type they need; when they are
done, `reject_unused` turns every parameter nobody read into a clear `InvalidArgument`, so an unsupported or
misspelt parameter is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from integration_api.errors import InvalidArgument
from providers.types import JsonValue


class ParameterReader:
    """Reads and consumes `model.*` parameters; every getter returns None when the parameter is absent."""

    def __init__(self, parameters: Mapping[str, JsonValue], *, ignore: Iterable[str] = ()) -> None:
        self._values = dict(parameters)
        self._unread = set(self._values) - set(ignore)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def raw(self, key: str) -> JsonValue:
        self._unread.discard(key)
        return self._values.get(key)

    def string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        raise InvalidArgument(f"parameter {key!r} must be a string, got {_type_name(value)}")

    def number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise InvalidArgument(f"parameter {key!r} must be a number, got a boolean")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise InvalidArgument(f"parameter {key!r} must be a number, got {_type_name(value)} {value!r:.40}")

    def integer(self, key: str) -> int | None:
        number = self.number(key)
        if number is None:
            return None
        if not number.is_integer():
            raise InvalidArgument(f"parameter {key!r} must be a whole number, got {number}")
        return int(number)

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidArgument(f"parameter {key!r} must be a boolean, got {_type_name(value)}")

    def string_list(self, key: str) -> list[str] | None:
        """A list of strings, given either as a list or as comma-separated text (`model.stop`)."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidArgument(f"parameter {key!r} must be text or a list of text, got {_type_name(value)}")

    def json_object(self, key: str) -> dict[str, JsonValue] | None:
        """A JSON object, given either as a struct or as JSON text (`model.response_format`)."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"parameter {key!r} must be JSON text: {exc}") from exc
        if isinstance(value, dict):
            return value
        raise InvalidArgument(f"parameter {key!r} must be a JSON object, got {_type_name(value)}")

    def choice(self, key: str, allowed: Iterable[str]) -> str | None:
        value = self.string(key)
        options = tuple(allowed)
        if value is not None and value not in options:
            raise InvalidArgument(f"parameter {key!r} must be one of {', '.join(options)}; got {value!r}")
        return value

    def reject_unused(self, provider: str) -> None:
        """Raise InvalidArgument naming every parameter that was given but not read."""
        if self._unread:
            names = ", ".join(sorted(self._unread))
            raise InvalidArgument(f"provider {provider!r} does not support parameter(s): {names}")


def _type_name(value: JsonValue) -> str:
    return {str: "text", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )
