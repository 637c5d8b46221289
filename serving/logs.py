"""One-line JSON logs: what log collectors parse without regexes.

Each record becomes `{"ts": ISO-8601 UTC, "level", "logger", "message", ...extra}` where extra is
every field passed as `logger.info("...", extra={"uid": ..., "handler": ...})`. Exceptions add
`"exc"` with the formatted traceback (logs only, never an HTTP body).

The webhook logs every admission at INFO (the audit trail), so formatting is on the hot path:
orjson instead of json, and the timestamp's seconds part formatted once per second, not per line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def __init__(self) -> None:
        super().__init__()
        # (second, its text) in one tuple: threads swap it atomically, never a text of another second.
        self._cached: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """`2026-12-05T04:15:14.123+00:00` (as datetime.isoformat(timespec="milliseconds") writes it)."""
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # Non-string keys and unknown types become strings, as json.dumps(default=str) did.
        return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup_logging(level: str | int = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger to `stream` (stderr) as JSON lines; replaces earlier handlers. Returns the
    handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
