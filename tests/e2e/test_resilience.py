"""Killing a webhook replica during a burst neither over-admits nor blocks the API server.

In cluster: a pod of the 3-replica webhook Deployment is deleted. Out of cluster (local mode):
one of two `accel serve webhook` processes behind the round-robin proxy is SIGKILLed, and the
proxy stops sending to it once it refuses connections, as a Service drops a dead endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e import cluster
from tests.e2e.burst import create_one
from tests.e2e.kubectl import wait_until

BURST = 16
QUOTA = 4  # e2e-burst: "*": 4 in cluster.e2e_policy()
CALL_DEADLINE_S = 40  # validate timeout 10s + API server overhead; anything longer is a hang


def test_killing_a_webhook_replica_during_a_burst(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    ns = team_namespace("e2e-burst")
    if e2e.target.out_of_cluster:
        replicas = request.getfixturevalue("webhook_replicas")
        kill: Callable[[], None] = lambda: replicas.kill(1)  # noqa: E731
    else:
        victims = [p["metadata"]["name"] for p in e2e.kubectl.get("pods", namespace=cluster.NS)["items"]
                   if p["metadata"]["labels"].get("app.kubernetes.io/name") == "accel-webhook"]  # fmt: skip
        assert len(victims) >= 2, "the webhook should run several replicas"
        kill = lambda: e2e.kubectl.delete("pod", victims[0], namespace=cluster.NS)  # noqa: E731

    pods = []
    for i in range(BURST):
        pod = cluster.gpu_pod(f"burst-{i}", team="e2e-burst", gpus=1, profile=cluster.PARKED_PROFILE)
        pod["metadata"]["namespace"] = ns
        pods.append(pod)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(create_one, e2e, pod) for pod in pods]
        kill()
        results = [f.result() for f in futures]

    admitted = [r for r in results if r.kind == "admitted"]
    assert all(r.seconds < CALL_DEADLINE_S for r in results), f"a create hung: {results}"
    existing = e2e.kubectl.get("pods", namespace=ns)["items"]
    assert len(existing) <= QUOTA, f"over-admission: {len(existing)} pods with a quota of {QUOTA}"
    assert len(admitted) == len(existing) and admitted, f"outcomes: {results}"
    unexpected = [r for r in results if r.kind == "error" and "accel.dev" not in r.detail]
    assert not unexpected, f"failures other than quota denials or webhook-call errors: {unexpected}"

    # The API server is not blocked: plain pods are admitted at once, and the webhook heals.
    plain = cluster.gpu_pod("plain", team="e2e-burst", gpus=0)
    plain["metadata"]["namespace"] = ns
    e2e.kubectl.create(plain)
    e2e.kubectl.run("get", "--raw", "/readyz")
    if e2e.target.out_of_cluster:
        # The quota is used up, so the verdict is a denial; what matters is that it is a verdict
        # (the surviving replica answered), not "failed calling webhook".
        probe = cluster.gpu_pod("after", team="e2e-burst", gpus=1, profile=cluster.PARKED_PROFILE)
        probe["metadata"]["namespace"] = ns
        verdict = create_one(e2e, probe | {"metadata": probe["metadata"] | {"name": "after"}})
        assert verdict.kind == "quota", verdict
    else:
        wait_until(
            lambda: (
                e2e.kubectl.get("deployment", "accel-webhook", namespace=cluster.NS)["status"].get(
                    "availableReplicas"
                )
                == 3
            ),
            timeout_s=120,
            what="accel-webhook back to 3 available replicas",
        )
