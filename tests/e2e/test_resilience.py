"""Killing a webhook replica during a burst neither over-admits nor blocks the API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError, wait_until

BURST = 16
QUOTA = 4  # e2e-burst: "*": 4 in cluster.e2e_policy()
CALL_DEADLINE_S = 40  # validate timeout 10s + API server overhead; anything longer is a hang


def test_killing_a_webhook_replica_during_a_burst(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    if e2e.target.out_of_cluster:
        pytest.skip("out-of-cluster mode runs one webhook process; there is no replica to kill")
    ns = team_namespace("e2e-burst")
    victims = [p["metadata"]["name"] for p in e2e.kubectl.get("pods", namespace=cluster.NS)["items"]
               if p["metadata"]["labels"].get("app.kubernetes.io/name") == "accel-webhook"]  # fmt: skip
    assert len(victims) >= 2, "the webhook should run several replicas"

    def create(i: int) -> tuple[str, float]:
        pod = cluster.gpu_pod(f"burst-{i}", team="e2e-burst", gpus=1, profile="gpu-any")
        pod["metadata"]["namespace"] = ns
        started = time.monotonic()
        try:
            e2e.kubectl.create(pod)
            outcome = "admitted"
        except KubectlError as exc:
            outcome = "quota" if "quota" in exc.stderr.lower() else f"error: {exc.stderr.strip()[:200]}"
        return outcome, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(create, i) for i in range(BURST)]
        e2e.kubectl.delete("pod", victims[0], namespace=cluster.NS)
        results = [f.result() for f in futures]

    admitted = [r for r in results if r[0] == "admitted"]
    assert all(seconds < CALL_DEADLINE_S for _, seconds in results), f"a create hung: {results}"
    existing = e2e.kubectl.get("pods", namespace=ns)["items"]
    assert len(existing) <= QUOTA, f"over-admission: {len(existing)} pods with a quota of {QUOTA}"
    assert len(admitted) == len(existing) and admitted, f"outcomes: {results}"
    unexpected = [r for r in results if r[0] not in ("admitted", "quota") and "accel.dev" not in r[0]]
    assert not unexpected, f"failures other than quota denials or webhook-call errors: {unexpected}"

    # The API server is not blocked: plain pods are admitted at once, and the webhook heals.
    plain = cluster.gpu_pod("plain", team="e2e-burst", gpus=0)
    plain["metadata"]["namespace"] = ns
    e2e.kubectl.create(plain)
    e2e.kubectl.run("get", "--raw", "/readyz")
    wait_until(lambda: e2e.kubectl.get("deployment", "accel-webhook", namespace=cluster.NS)["status"].get("availableReplicas") == 3,
               timeout_s=120, what="accel-webhook back to 3 available replicas")  # fmt: skip
