"""Two webhook replicas share one quota ledger: a burst spread over both never over-admits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.e2e import cluster
from tests.e2e.burst import burst
from tests.e2e.conftest import WebhookReplicas

BURST = 50
CALL_DEADLINE_S = 40  # validate timeout 10s + API server overhead; anything longer is a hang


def test_a_burst_over_two_replicas_admits_exactly_the_quota(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], webhook_replicas: WebhookReplicas
) -> None:
    ns = team_namespace("e2e-replicas")  # quota: REPLICAS_QUOTA GPUs, 1 per pod
    pods = []
    for i in range(BURST):
        pod = cluster.gpu_pod(f"burst-{i}", team="e2e-replicas", gpus=1, profile=cluster.PARKED_PROFILE)
        pod["metadata"]["namespace"] = ns
        pods.append(pod)
    outcomes = burst(e2e, pods, workers=BURST)

    kinds = Counter(o.kind for o in outcomes)
    existing = e2e.kubectl.get("pods", namespace=ns)["items"]
    assert len(existing) <= cluster.REPLICAS_QUOTA, f"over-admission: {len(existing)} pods, {kinds}"
    assert kinds["admitted"] == len(existing), f"admitted {kinds['admitted']} but {len(existing)} exist"
    assert kinds["admitted"] == cluster.REPLICAS_QUOTA, (
        f"the quota should be used to the last GPU: {kinds}; errors: "
        f"{[o.detail for o in outcomes if o.kind == 'error'][:3]}"
    )
    assert kinds["quota"] == BURST - cluster.REPLICAS_QUOTA, kinds
    assert all(o.seconds < CALL_DEADLINE_S for o in outcomes), "a create hung"
    used = {
        port: webhook_replicas.proxy.connections[port] for port in (p.port for p in webhook_replicas.replicas)
    }
    assert all(used.values()), f"both replicas must have served the burst: connections per port {used}"
