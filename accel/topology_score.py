"""Topology co-location score: pods of one job prefer the leaf, then spine, then zone of their peers.

Rules:
1. A pod's job is (namespace, value of the first JOB_LABELS label it carries); no label = no job,
   and the topology score is 0 everywhere (nothing to co-locate with).
2. Closeness of a candidate node to one placed peer is compared on FULL paths (region/zone/core/
   spine/leaf; a value is only unique within its parent, accelerators.md 4.6): same node or same
   leaf path 10, same spine path 6, same zone path 3, else 0. A level whose value is unknown on
   either side never matches.
3. The raw score is the mean closeness over all placed (bound or assumed) peers, times 0.8, plus
   RDMA_BONUS when the node is RDMA/RoCE capable and the pod belongs to a job (multi-node jobs
   talk over the fabric). Range 0..10.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from accel.labels import Topology

JOB_LABELS: tuple[str, ...] = (
    "accel.dev/job",
    "training.kubeflow.org/job-name",
    "volcano.sh/job-name",
    "scheduling.x-k8s.io/pod-group",
    "pod-group.scheduling.sigs.k8s.io",
)
SAME_LEAF, SAME_SPINE, SAME_ZONE = 10.0, 6.0, 3.0
CLOSENESS_SHARE = 0.8
RDMA_BONUS = 2.0

JobKey = tuple[str, str]


def job_key(namespace: str, labels: Mapping[str, str]) -> JobKey | None:
    """Rule 1: (namespace, job id) or None."""
    for label in JOB_LABELS:
        value = labels.get(label)
        if value:
            return (namespace, value)
    return None


def _same(a: Topology, b: Topology, level: str) -> bool:
    pa, pb = a.path(level), b.path(level)
    return pa[-1] is not None and pa == pb


def closeness(node: Topology, peer: Topology, *, same_node: bool = False) -> float:
    """Rule 2 for one peer."""
    if same_node or _same(node, peer, "leaf"):
        return SAME_LEAF
    if _same(node, peer, "spine"):
        return SAME_SPINE
    if _same(node, peer, "zone"):
        return SAME_ZONE
    return 0.0


def topology_raw(
    node_name: str, node: Topology, peers: Sequence[tuple[str, Topology]], *, in_job: bool
) -> float:
    """Rule 3: raw 0..10 for one candidate node; `peers` are (node name, topology) of placed peers."""
    near = 0.0
    if peers:
        near = sum(closeness(node, topo, same_node=name == node_name) for name, topo in peers) / len(peers)
    bonus = RDMA_BONUS if in_job and node.rdma else 0.0
    return CLOSENESS_SHARE * near + bonus
