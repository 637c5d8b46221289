"""accel-scheduler end to end: preferred type first, fallback when full, type annotation at bind."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until

TYPE_ANNOTATION = "accelerator.opendatahub.io/type"


def _bound(e2e: cluster.E2ECluster, ns: str, name: str) -> cluster.Obj | None:
    pod = e2e.kubectl.get("pod", name, namespace=ns)
    return pod if pod["spec"].get("nodeName") else None


def test_prefers_h100_then_falls_back_to_a100_when_full(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    if not e2e.scheduler_running:
        pytest.skip("accel-scheduler is not running (out-of-cluster mode without kube-scheduler on PATH)")
    if (
        not set(cluster.FAKE_GPUS) <= set(e2e.gpu_nodes)
        or len({e2e.gpu_nodes[t] for t in cluster.FAKE_GPUS}) < 2
    ):
        pytest.skip("needs two worker nodes to fake an H100 and an A100 node")
    ns = team_namespace("e2e-sched")
    placed = {}
    for name, expected_type in (("first", "nvidia-h100-80gb"), ("second", "nvidia-a100-80gb")):
        pod = cluster.gpu_pod(name, team="e2e-sched", gpus=cluster.GPUS_PER_NODE, profile="h100-first")
        pod["metadata"]["namespace"] = ns
        e2e.kubectl.create(pod)
        bound = wait_until(partial(_bound, e2e, ns, name), timeout_s=60, what=f"pod {name} bound")
        placed[name] = bound["spec"]["nodeName"]
        assert placed[name] == e2e.gpu_nodes[expected_type], f"{name} should run on the {expected_type} node"
        assert bound["metadata"]["annotations"][TYPE_ANNOTATION] == expected_type
    assert placed["first"] != placed["second"]
