"""A hostile pod author declares a job size (issue 21 residual, accel.placement.state rule 3).

`accel.dev/job-size` is the author's. After a job's first pod binds, accel's extender holds that
pod's leaf for the job's remaining pods: another team's pod scores low on a held node (the
`reservation` component of its `accel.dev/placement` explanation). Before the cap, a team whose
quota admits a single pod could declare a size of 3 and hold a leaf for 2 pods it can never create.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import cluster

PLACEMENT_ANNOTATION = "accel.dev/placement"
LEAF = "leaf-8a"
# One leaf of 4 + 8 A100 GPUs: the only leaf that holds three 4-GPU pods (the harness's A100 node
# on leaf-1b holds two), so a job of 3 such pods is placed there.
LEAF_NODES = (
    cluster.LocalNode(
        "e2e-jobsize-8a-1", "nvidia-a100-80gb",
        cluster._gfd("NVIDIA-A100-SXM4-80GB", 4, 81920, "spine-8", LEAF), {"nvidia.com/gpu": 4},
    ),
    cluster.LocalNode(
        "e2e-jobsize-8a-2", "nvidia-a100-80gb",
        cluster._gfd("NVIDIA-A100-SXM4-80GB", 8, 81920, "spine-8", LEAF), {"nvidia.com/gpu": 8},
    ),
)


@pytest.fixture
def leaf_nodes(e2e: cluster.E2ECluster) -> Iterator[None]:
    if e2e.control_plane is None:
        pytest.skip("the extra nodes are API objects: local mode only")
    if not e2e.scheduler_running:
        pytest.skip("accel-scheduler is not running (no kube-scheduler binary)")
    try:
        cluster.create_local_gpu_nodes(e2e.kubectl, LEAF_NODES)
        yield
    finally:
        for node in LEAF_NODES:
            cluster.delete_quietly(e2e.kubectl, "node", node.name)


def test_a_job_size_beyond_the_team_quota_holds_no_leaf(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], leaf_nodes: None
) -> None:
    forger_ns = team_namespace("e2e-redteam-jobsize")  # quota: one 4-GPU A100 pod
    pod = cluster.gpu_pod("big-0", team="e2e-redteam-jobsize", gpus=4, profile="a100-only")
    pod["metadata"]["namespace"] = forger_ns
    pod["metadata"]["labels"] |= {"accel.dev/job": "big", "accel.dev/job-size": "3"}
    e2e.kubectl.create(pod)
    bound = cluster.wait_bound(e2e.kubectl, forger_ns, "big-0")
    assert bound["spec"]["nodeName"].startswith("e2e-jobsize-8a-"), bound["spec"]["nodeName"]

    # Another team's 1-GPU pod that can only land on that leaf: no hold may lower its score there.
    other_ns = team_namespace("e2e-sched")
    other = cluster.gpu_pod("solo", team="e2e-sched", gpus=1, profile="a100-only")
    other["metadata"]["namespace"] = other_ns
    other["spec"]["nodeSelector"] = {f"{cluster.TOPOLOGY}/leaf": LEAF}
    e2e.kubectl.create(other)
    placed = cluster.wait_bound(e2e.kubectl, other_ns, "solo")
    explanation = json.loads(placed["metadata"]["annotations"][PLACEMENT_ANNOTATION])
    assert explanation["components"].get("reservation", 0.0) == 0.0, explanation
