"""JSON log lines (serving/logs.py) and the per-app metrics registry (serving/metrics.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from serving.logs import setup_logging
from serving.metrics import Metrics


def test_log_line_is_one_json_object_with_extras() -> None:
    stream = io.StringIO()
    handler = setup_logging("INFO", stream=stream)
    try:
        logging.getLogger("accel.test").info("admitted %s", "pod-a", extra={"uid": "u-1"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("accel.test").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "admitted pod-a" and first["uid"] == "u-1"
    assert first["level"] == "info" and first["logger"] == "accel.test" and first["ts"].endswith("+00:00")
    assert second["level"] == "error" and "RuntimeError: boom" in second["exc"]


def test_each_metrics_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.http_requests.labels(app="webhook", handler="/mutate", code="200").inc()
    assert (
        a.registry.get_sample_value(
            "accel_http_requests_total", {"app": "webhook", "handler": "/mutate", "code": "200"}
        )
        == 1.0
    )
    assert (
        b.registry.get_sample_value(
            "accel_http_requests_total", {"app": "webhook", "handler": "/mutate", "code": "200"}
        )
        is None
    )


def test_every_contract_metric_is_exposed() -> None:
    m = Metrics()
    m.tls_cert_expiry.labels(app="webhook").set(1.0)
    m.cluster_state_fresh.labels(app="extender").set(1)
    m.cluster_state_age.labels(app="extender").set(3)
    m.policy_reload.labels(result="ok").inc()
    m.policy_last_good.set(5)
    m.http_rejected.labels(app="api", reason="overloaded").inc()
    m.http_inflight.labels(app="api").set(0)
    m.http_duration.labels(app="api", handler="/x").observe(0.01)
    m.http_requests.labels(app="api", handler="/x", code="200").inc()
    samples = {s.name for f in text_string_to_metric_families(m.render().decode()) for s in f.samples}
    for name in (
        "accel_http_requests_total",
        "accel_http_request_duration_seconds_bucket",
        "accel_http_inflight_requests",
        "accel_http_rejected_total",
        "accel_tls_cert_expiry_timestamp_seconds",
        "accel_policy_reload_total",
        "accel_policy_last_good_timestamp_seconds",
        "accel_cluster_state_fresh",
        "accel_cluster_state_age_seconds",
    ):
        assert name in samples, name


def test_app_metrics_are_idempotent_and_type_checked() -> None:
    m = Metrics()
    first = m.counter("accel_webhook_denials_total", "Denials.", ("reason",))
    assert isinstance(first, Counter)
    assert m.counter("accel_webhook_denials_total", "Denials.", ("reason",)) is first
    with pytest.raises(ValueError, match="already declared"):
        m.gauge("accel_webhook_denials_total", "x")


@pytest.mark.parametrize(
    "created", [0.0, 1_764_909_314.0, 1_764_909_314.1239, 1_764_909_314.9999, 1_764_909_315.5]
)
def test_log_timestamp_matches_isoformat_milliseconds(created: float) -> None:
    """The per-second cached timestamp writes what datetime.isoformat(timespec="milliseconds") writes."""
    from datetime import UTC, datetime

    from serving.logs import JsonFormatter

    formatter = JsonFormatter()
    record = logging.LogRecord("accel.test", logging.INFO, "f", 1, "admission", (), None)
    record.created = created
    expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
    assert json.loads(formatter.format(record))["ts"] == expected


def test_log_extras_of_any_type_still_serialise() -> None:
    """Extras json cannot encode natively (a Fraction, a set) are written as text, never an error."""
    from fractions import Fraction

    from serving.logs import JsonFormatter

    record = logging.LogRecord("accel.test", logging.INFO, "f", 1, "quota %s", ("nlp",), None)
    record.amount = Fraction(1, 7)
    record.names = {"a"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "quota nlp" and line["amount"] == "1/7" and line["names"] == "{'a'}"
