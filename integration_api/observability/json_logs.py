"""JSON-lines logs (``log_format = "json"``): one JSON object per record, for log pipelines that parse them.

Every record has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message`` and, with an
exception, ``exc_info`` (the formatted traceback). A record that carries structured fields (the access log's
``extra={"access": {...}}``: request_id, stream_id, rpc, principal, provider, model, status, code, ttft_ms,
total_ms) has them at the top level too, so a query can filter on ``code`` or ``provider`` directly.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

# `extra` attributes whose value (a dict) is merged into the line.
STRUCTURED_EXTRAS = ("access",)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STRUCTURED_EXTRAS:
            fields = getattr(record, name, None)
            if isinstance(fields, dict):
                for key, value in fields.items():
                    line.setdefault(key, value)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()
