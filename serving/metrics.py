"""Every shared Prometheus metric, declared once, on a registry that belongs to one app.

Nothing registers at import time: each server builds `Metrics()` (or `Metrics(registry)`) in its
app factory, so tests get fresh counters and two apps in one process never collide. App-specific
metrics go on the same registry through `metrics.counter(...)` / `gauge` / `histogram`, which
return the existing collector when asked for the same name twice (idempotent wiring).

Names (contract; dashboards and alerts use them):
- accel_http_requests_total{app,handler,code}, accel_http_request_duration_seconds{app,handler}
- accel_http_inflight_requests{app}, accel_http_rejected_total{app,reason}
- accel_tls_cert_expiry_timestamp_seconds{app}
- accel_policy_reload_total{result}, accel_policy_last_good_timestamp_seconds
- accel_cluster_state_fresh{app}, accel_cluster_state_age_seconds{app}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Admission and extender calls must answer in well under the 5-10 s timeouts; resolve the low end.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

REJECT_BODY_TOO_LARGE = "body_too_large"
REJECT_OVERLOADED = "overloaded"
REJECT_MALFORMED = "malformed"
REJECT_UNAUTHENTICATED = "unauthenticated"  # no client certificate where one is required
REJECT_FORBIDDEN = "forbidden"  # a verified client certificate that names someone else

_C = TypeVar("_C", Counter, Gauge, Histogram)


class Metrics:
    """The shared collectors of one app, on `self.registry` (new and private unless one is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._collectors: dict[str, Counter | Gauge | Histogram] = {}
        self.http_requests = self.counter(
            "accel_http_requests_total",
            "HTTP requests answered, by handler and status code.",
            ("app", "handler", "code"),
        )
        self.http_duration = self.histogram(
            "accel_http_request_duration_seconds", "Time to answer an HTTP request.", ("app", "handler")
        )
        self.http_inflight = self.gauge(
            "accel_http_inflight_requests", "Requests being handled now.", ("app",)
        )
        self.http_rejected = self.counter(
            "accel_http_rejected_total",
            "Requests refused before the handler ran (too large, overloaded, malformed).",
            ("app", "reason"),
        )
        self.tls_cert_expiry = self.gauge(
            "accel_tls_cert_expiry_timestamp_seconds",
            "Not-after of the serving certificate (unix time).",
            ("app",),
        )
        self.policy_reload = self.counter(
            "accel_policy_reload_total", "Policy reload attempts by result (ok, invalid, error).", ("result",)
        )
        self.policy_last_good = self.gauge(
            "accel_policy_last_good_timestamp_seconds", "When the policy in force was loaded (unix time)."
        )
        self.cluster_state_fresh = self.gauge(
            "accel_cluster_state_fresh", "1 when the watched cluster state is in sync, else 0.", ("app",)
        )
        self.cluster_state_age = self.gauge(
            "accel_cluster_state_age_seconds", "Seconds since the cluster state was last confirmed.", ("app",)
        )

    def _get_or_make(self, kind: type[_C], name: str, doc: str, labels: Sequence[str], **kw: object) -> _C:
        existing = self._collectors.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError(
                    f"metric {name} already declared as {type(existing).__name__}, not {kind.__name__}"
                )
            return existing
        collector = kind(name, doc, labelnames=tuple(labels), registry=self.registry, **kw)  # type: ignore[arg-type]
        self._collectors[name] = collector
        return collector

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """A counter on this registry (the same one again if `name` exists). `name` ends in _total."""
        return self._get_or_make(Counter, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_make(Gauge, name, doc, labels)

    def histogram(
        self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return self._get_or_make(Histogram, name, doc, labels, buckets=tuple(buckets))

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving `metrics` at /metrics."""

    async def handle(_request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handle
