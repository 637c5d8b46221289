"""`serving.logs.StructuredLog` writes exactly the line `logger.info(message, extra=fields)` writes.

The admission audit line is written directly (no LogRecord) only when `setup_logging`'s handler is
the one place the record could go; any other configuration (a filter, a second handler such as
pytest's caplog, a disabled logger, a handler level above INFO) must behave as `logging` does.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.logs import _STANDARD_ATTRS, JsonFormatter, StructuredLog, setup_logging

KEYS = st.text(min_size=1, max_size=12).filter(lambda k: k not in _STANDARD_ATTRS)
VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.fractions(max_denominator=50),
    st.lists(st.text(max_size=5), max_size=3),
)


@given(
    fields=st.dictionaries(KEYS, VALUES, max_size=8),
    message=st.text(max_size=30),
    created=st.floats(min_value=0, max_value=4e9),
)
@settings(max_examples=300, deadline=None)
def test_direct_line_equals_the_formatted_record(
    fields: dict[str, Any], message: str, created: float
) -> None:
    formatter = JsonFormatter()
    record = logging.getLogger("webhook.admitter").makeRecord(
        "webhook.admitter", logging.INFO, "f", 1, message, (), None, extra=fields
    )
    record.created = created
    assert formatter.line(created, "info", "webhook.admitter", message, fields) == formatter.format(record)


@pytest.fixture
def configured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = setup_logging("INFO", stream=stream)
    logger = logging.getLogger("accel.test.structured")
    try:
        yield stream, logger
    finally:
        logging.getLogger().removeHandler(handler)
        logger.filters.clear()
        logger.disabled = False


FIELDS = {
    "uid": "u-1",
    "webhook": "mutate",
    "decision": "allowed",
    "reason": "mutated",
    "profile": "large-any",
    "team": "nlp",
    "namespace": "nlp",
    "amount": Fraction(1, 3),
}


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_direct_write_is_the_logging_line_but_its_timestamp(
    configured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, logger = configured
    StructuredLog(logger).info("admission", FIELDS)
    logger.info("admission", extra=FIELDS)
    direct, logged = lines(stream)
    assert direct.pop("ts")[:4] == logged.pop("ts")[:4]
    assert direct == logged and list(direct) == list(logged)  # same keys, same order
    assert (
        direct["amount"] == "1/3"
        and direct["level"] == "info"
        and direct["logger"] == "accel.test.structured"
    )


def test_a_second_handler_gets_the_record_through_logging(
    configured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, logger = configured
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    extra = Keep()
    logger.addHandler(extra)
    try:
        StructuredLog(logger).info("admission", FIELDS)
    finally:
        logger.removeHandler(extra)
    assert [getattr(r, "uid", None) for r in seen] == ["u-1"]
    assert lines(stream)[0]["uid"] == "u-1"  # and the JSON handler still wrote its line


def test_a_filter_still_applies(configured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = configured
    logger.addFilter(lambda record: getattr(record, "uid", "") != "u-1")
    log = StructuredLog(logger)
    log.info("admission", FIELDS)
    log.info("admission", {**FIELDS, "uid": "u-2"})
    assert [line["uid"] for line in lines(stream)] == ["u-2"]


@pytest.mark.parametrize("how", ["disabled", "logger-level", "handler-level"])
def test_nothing_is_written_when_logging_would_not_write(
    configured: tuple[io.StringIO, logging.Logger], how: str
) -> None:
    stream, logger = configured
    if how == "disabled":
        logger.disabled = True
    elif how == "logger-level":
        logging.getLogger().setLevel(logging.WARNING)
    else:
        logging.getLogger().handlers[0].setLevel(logging.WARNING)
    StructuredLog(logger).info("admission", FIELDS)
    logger.info("admission", extra=FIELDS)
    assert stream.getvalue() == ""


def test_a_value_json_cannot_hold_is_reported_not_raised(
    configured: tuple[io.StringIO, logging.Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    """As with `logging`: a line that cannot be written goes to handleError (stderr), the caller goes on."""
    stream, logger = configured
    StructuredLog(logger).info("admission", {"uid": 2**70})
    assert stream.getvalue() == "" and "Integer exceeds 64-bit range" in capsys.readouterr().err
