"""Small HTTP facts every adapter needs the same way: an upstream's retry advice, and keeping keys out of text."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

REDACTED = "[redacted]"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The upstream's retry advice in seconds: `retry-after-ms` (Azure), else `retry-after` (seconds or a date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def scrub(text: str, secret: str) -> str:
    """`text` without `secret`: some upstreams echo (part of) the key in authentication errors."""
    return text.replace(secret, REDACTED) if secret else text
