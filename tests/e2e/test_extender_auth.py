"""Issue 21 on the real control plane: the extender answers only kube-scheduler (mTLS).

kube-scheduler runs with the shipped KubeSchedulerConfiguration (translated to v1beta3 on 1.24)
and the client certificate from `accel certs client` (outofcluster.py); the extender is the real
`accel serve extender` process. An anonymous POST /bind for a real pending pod is refused 401
and the pod stays unbound in the API server; the same call with the scheduler's certificate
binds it; and a GPU pod is scheduled by kube-scheduler through the authenticated extender.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until
from tests.e2e.outofcluster import _scheduler_client_cert

UNAUTHENTICATED = 'accel_http_rejected_total{app="extender",reason="unauthenticated"}'


def _servers(e2e: cluster.E2ECluster) -> Any:
    if e2e.servers is None or "extender" not in e2e.servers.ports:
        pytest.skip("the extender does not run on this host in this mode (kind runs it as a Deployment)")
    return e2e.servers


def _post(url: str, body: dict[str, Any], ctx: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _rejected(servers: Any) -> float:
    with urllib.request.urlopen(servers.metrics_url("extender"), timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(UNAUTHENTICATED):
                return float(line.split()[-1])
    return 0.0


def _scheduler_context(servers: Any) -> ssl.SSLContext:
    client = _scheduler_client_cert(servers)
    ctx = servers.tls_context()
    ctx.load_cert_chain(client / "tls.crt", client / "tls.key")
    return ctx


def test_anonymous_bind_is_refused_and_the_scheduler_certificate_binds(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    servers = _servers(e2e)
    ns = team_namespace("e2e-sched")
    # A governed GPU pod whose nodeSelector no node has: kube-scheduler's own filters keep it
    # Pending (so no scheduler races these calls), while the extender watches it like any other.
    pod = cluster.gpu_pod("pending", team="e2e-sched", gpus=1, profile="h100-first")
    pod["metadata"]["namespace"] = ns
    pod["spec"]["nodeSelector"] = {"e2e.accel.dev/nowhere": "true"}
    e2e.kubectl.create(pod)
    uid = e2e.kubectl.get("pod", "pending", namespace=ns)["metadata"]["uid"]
    node = e2e.gpu_nodes["nvidia-h100-80gb"]
    bind = {"PodName": "pending", "PodNamespace": ns, "PodUID": uid, "Node": node}
    before = _rejected(servers)

    status, answer = _post(servers.url("extender", "/bind"), bind, servers.tls_context())
    assert status == 401 and "client certificate required" in answer["error"]
    assert not e2e.kubectl.get("pod", "pending", namespace=ns)["spec"].get("nodeName")
    assert _rejected(servers) == before + 1

    scheduler = _scheduler_context(servers)

    answers: list[str] = []

    def bound_by_scheduler_cert() -> bool:
        status, answer = _post(servers.url("extender", "/bind"), bind, scheduler)
        assert status == 200, answer
        answers.append(answer["Error"])
        return answer["Error"] == ""  # "not known to the extender yet; retry" until its watch sees the pod

    try:
        wait_until(bound_by_scheduler_cert, timeout_s=30, what="bind with the scheduler's client certificate")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the extender last said {answers[-1:]}") from None
    assert e2e.kubectl.get("pod", "pending", namespace=ns)["spec"]["nodeName"] == node


def test_kube_scheduler_schedules_through_the_authenticated_extender(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    servers = _servers(e2e)
    if not e2e.scheduler_running:
        pytest.skip("kube-scheduler is not available in this mode")
    ns = team_namespace("e2e-sched")
    before = _rejected(servers)
    pod = cluster.gpu_pod("via-mtls", team="e2e-sched", gpus=1, profile="h100-first")
    pod["metadata"]["namespace"] = ns
    e2e.kubectl.create(pod)

    def bound() -> dict[str, Any] | None:
        got: dict[str, Any] = e2e.kubectl.get("pod", "via-mtls", namespace=ns)
        return got if got["spec"].get("nodeName") else None

    placed = wait_until(partial(bound), timeout_s=60, what="pod bound by kube-scheduler via the extender")
    assert placed["metadata"]["annotations"]["accelerator.opendatahub.io/type"] == "nvidia-h100-80gb"
    assert _rejected(servers) == before  # the scheduler was never refused
