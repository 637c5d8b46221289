"""Placement through the real kube-scheduler: a 3-pod job kept on the one leaf that holds it, and
every bind explained (`accel.dev/placement` annotation, `AcceleratorPlaced` Event)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until

PLACEMENT_ANNOTATION = "accel.dev/placement"
# Leaf "leaf-9a" holds two 4-GPU pods (one 8-GPU node); leaf "leaf-9b" holds three (8 + 4 GPUs). The
# harness's own A100 node (leaf-1b) holds two. Only leaf-9b can take the whole job.
JOB_NODES = (
    cluster.LocalNode(
        "e2e-place-9a-1",
        "nvidia-a100-80gb",
        cluster._gfd("NVIDIA-A100-SXM4-80GB", 8, 81920, "spine-9", "leaf-9a"),
        {"nvidia.com/gpu": 8},
    ),
    cluster.LocalNode(
        "e2e-place-9b-1",
        "nvidia-a100-80gb",
        cluster._gfd("NVIDIA-A100-SXM4-80GB", 8, 81920, "spine-9", "leaf-9b"),
        {"nvidia.com/gpu": 8},
    ),
    cluster.LocalNode(
        "e2e-place-9b-2",
        "nvidia-a100-80gb",
        cluster._gfd("NVIDIA-A100-SXM4-80GB", 4, 81920, "spine-9", "leaf-9b"),
        {"nvidia.com/gpu": 4},
    ),
)


@pytest.fixture
def job_nodes(e2e: cluster.E2ECluster) -> Iterator[dict[str, str]]:
    """Three more A100 nodes on two new leaves, deleted afterwards (other cases count on the
    harness's nodes alone)."""
    if e2e.control_plane is None:
        pytest.skip("the extra nodes are API objects: local mode only")
    try:
        cluster.create_local_gpu_nodes(e2e.kubectl, JOB_NODES)
        yield {node.name: node.labels[f"{cluster.TOPOLOGY}/leaf"] for node in JOB_NODES}
    finally:
        for node in JOB_NODES:
            cluster.delete_quietly(e2e.kubectl, "node", node.name)


def _placed_event(e2e: cluster.E2ECluster, ns: str, name: str) -> cluster.Obj | None:
    events = json.loads(e2e.kubectl.run("get", "events", "-n", ns, "-o", "json"))["items"]
    found = [
        e
        for e in events
        if e.get("reason") == "AcceleratorPlaced" and e["involvedObject"].get("name") == name
    ]
    return found[0] if found else None


def test_three_pod_job_stays_on_the_one_leaf_that_holds_it_and_every_bind_is_explained(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], job_nodes: dict[str, str]
) -> None:
    if not e2e.scheduler_running:
        pytest.skip("accel-scheduler is not running (no kube-scheduler binary)")
    ns = team_namespace("e2e-sched")
    names = [f"worker-{i}" for i in range(3)]
    for name in names:
        pod = cluster.gpu_pod(name, team="e2e-sched", gpus=4, profile="a100-only")
        pod["metadata"]["namespace"] = ns
        pod["metadata"]["labels"] |= {"accel.dev/job": "train", "accel.dev/job-size": "3"}
        e2e.kubectl.create(pod)
    bound = {
        name: cluster.wait_bound(e2e.kubectl, ns, name)
        for name in names
    }
    nodes = {name: pod["spec"]["nodeName"] for name, pod in bound.items()}
    assert {job_nodes.get(node) for node in nodes.values()} == {"leaf-9b"}, nodes
    for name, pod in bound.items():
        explanation = json.loads(pod["metadata"]["annotations"][PLACEMENT_ANNOTATION])
        assert explanation["node"] == nodes[name] and explanation["type"] == "nvidia-a100-80gb"
        assert explanation["job"] == f"{ns}/train"
        parts = explanation["components"]
        assert set(parts) >= {"preference", "topology", "fragmentation", "scarcity", "rounding"}
        assert abs(sum(parts.values()) - explanation["score"]) < 0.01  # the components add up to the score
        event = wait_until(
            partial(_placed_event, e2e, ns, name), timeout_s=30, what=f"AcceleratorPlaced event of {name}"
        )
        assert event["reportingComponent"] == "accel-extender" and event["type"] == "Normal"
        assert f"placed on {nodes[name]}" in event["message"]
