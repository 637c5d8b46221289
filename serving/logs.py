"""One-line JSON logs: what log collectors parse without regexes.

Each record becomes `{"ts": ISO-8601 UTC, "level", "logger", "message", ...extra}` where extra is
every field passed as `logger.info("...", extra={"uid": ..., "handler": ...})`. Exceptions add
`"exc"` with the formatted traceback (logs only, never an HTTP body).

The webhook logs every admission at INFO (the audit trail), so formatting is on the hot path:
orjson instead of json, and the timestamp's seconds part formatted once per second, not per line.
`StructuredLog.info(message, fields)` writes exactly the line `logger.info(message, extra=fields)`
would write, but when the record could only reach the one handler `setup_logging` installed
(no filters, no other handlers on the way, the level enabled) it formats and writes that line
itself, without building a `LogRecord` or looking up the caller: about a fifth of the cost. In
any other configuration (pytest's caplog, a filter, another handler) it goes through `logging`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
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
        return _dumps(payload)

    def line(self, created: float, level: str, logger: str, message: str, fields: Mapping[str, Any]) -> str:
        """What `format` writes for a record of these values whose `extra=` was `fields` (no
        exception, no %-arguments; `StructuredLog` only passes fields a record would keep)."""
        payload: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        for key, value in fields.items():
            if not key.startswith("_"):
                payload[key] = value
        return _dumps(payload)


def _dumps(payload: dict[str, Any]) -> str:
    # Non-string keys and unknown types become strings, as json.dumps(default=str) did.
    return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `setup_logging` installs: a stream handler with a `JsonFormatter` (a class of
    its own so `StructuredLog` can recognise it and write its lines directly)."""

    formatter: JsonFormatter

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())


class StructuredLog:
    """`info(message, fields)`: the line of `logger.info(message, extra=fields)`, cheaply (module
    docstring). `fields` must not use a LogRecord attribute name (logging refuses those too)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _direct(self, level: int) -> JsonLinesHandler | None:
        """The handler to write to directly, or None when logging itself must handle the record:
        the exact path `Logger.handle` and `callHandlers` would take, checked on each call (a
        test or an operator may change the configuration at any time)."""
        logger = self.logger
        if logger.disabled or logger.filters:
            return None
        found: JsonLinesHandler | None = None
        current: logging.Logger | None = logger
        while current is not None:
            for handler in current.handlers:
                if found is not None or type(handler) is not JsonLinesHandler or handler.filters:
                    return None
                found = handler
            current = current.parent if current.propagate else None
        if found is None or level < found.level:
            return None
        return found

    def info(self, message: str, fields: Mapping[str, Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = self._direct(logging.INFO)
        if handler is None:
            logger.info(message, extra=dict(fields))
            return
        handler.acquire()
        try:
            line = handler.formatter.line(time.time(), "info", logger.name, message, fields)
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:  # as StreamHandler.emit: report to stderr, never fail the request
            handler.handleError(
                logger.makeRecord(
                    logger.name, logging.INFO, "(direct)", 0, message, (), None, extra=dict(fields)
                )
            )
        finally:
            handler.release()


def setup_logging(level: str | int = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger to `stream` (stderr) as JSON lines; replaces earlier handlers.
    Returns the handler."""
    handler = JsonLinesHandler(stream if stream is not None else sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
