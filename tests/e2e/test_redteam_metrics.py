"""What a network peer reads from accel's serving ports (issue 21 residual): the per-team series.

`accel_quota_used_gpus{team}` (webhook), `accel_gpu_seconds_total` / `accel_gpu_cost_total` (API)
say which team runs what and what it costs. The servers run as the shipped Deployments do, with a
metrics listener (`--metrics-port`, which a NetworkPolicy opens to Prometheus alone): there the
series are, and /metrics on each HTTPS serving port (which users and peers reach) answers 404.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until

SERVERS = ("webhook", "extender", "api")


def _read(url: str, **kwargs: object) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_team_series_are_only_on_the_metrics_listeners(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    servers = e2e.servers
    if servers is None:
        pytest.skip("the servers run in the cluster here (kind): their ports are not this host's")
    ns = team_namespace("e2e-mutate")
    pod = cluster.gpu_pod("counted", team="e2e-mutate", gpus=1, profile=cluster.PARKED_PROFILE)
    pod["metadata"]["namespace"] = ns
    e2e.kubectl.create(pod)  # the webhook publishes every team's quota use once it decides a GPU pod

    def quota_series() -> str | None:
        status, text = _read(servers.metrics_url("webhook"))
        return text if status == 200 and 'accel_quota_used_gpus{team="e2e-mutate"' in text else None

    wait_until(quota_series, timeout_s=30, what="the webhook's quota series on its metrics listener")
    status, text = _read(servers.metrics_url("api"))
    assert status == 200 and "# TYPE accel_gpu_seconds_total counter" in text
    for name in SERVERS:
        status, text = _read(servers.url(name, "/metrics"), context=servers.tls_context())
        assert status == 404 and "e2e-mutate" not in text and "accel_" not in text, (name, status, text[:200])
        assert _read(servers.url(name, "/readyz"), context=servers.tls_context())[0] == 200, name
