"""Topology co-location score: pods of one job prefer the leaf, then spine, then zone of their peers.

Rules:
1. A pod's job is accel.cluster.job_intent.job_key; no job label = no job, and the topology score
   is 0 everywhere (nothing to co-locate with).
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

import numpy as np
import numpy.typing as npt

from accel.cluster.labels import Topology

SAME_LEAF, SAME_SPINE, SAME_ZONE = 10.0, 6.0, 3.0
CLOSENESS_SHARE = 0.8
RDMA_BONUS = 2.0

Paths = tuple[tuple[str | None, ...], ...]  # (leaf path, spine path, zone path)


def paths(topo: Topology) -> Paths:
    """The full paths compared by rule 2, computed once per node (Topology.path is not free)."""
    return (topo.path("leaf"), topo.path("spine"), topo.path("zone"))


_LEVEL_SCORES = (SAME_LEAF, SAME_SPINE, SAME_ZONE)


def closeness_paths(node: Paths, peer: Paths, *, same_node: bool = False) -> float:
    """Rule 2 on precomputed paths."""
    if same_node:
        return SAME_LEAF
    for mine, theirs, score in zip(node, peer, _LEVEL_SCORES, strict=True):
        if mine[-1] is not None and mine == theirs:
            return score
    return 0.0


def closeness(node: Topology, peer: Topology, *, same_node: bool = False) -> float:
    """Rule 2 for one peer."""
    return closeness_paths(paths(node), paths(peer), same_node=same_node)


def raw_from_groups(
    node: Paths, rdma: bool, groups: Mapping[Paths, int], *, same_node: int = 0, in_job: bool
) -> float:
    """Rule 3 with peers grouped by path (count per distinct path); `same_node` peers on this node."""
    total = sum(groups.values())
    near = 0.0
    if total:
        same = same_node * SAME_LEAF
        rest = sum(n * closeness_paths(node, p) for p, n in groups.items())
        rest -= same_node * closeness_paths(node, node) if same_node else 0.0
        near = (same + rest) / total
    bonus = RDMA_BONUS if in_job and rdma else 0.0
    return CLOSENESS_SHARE * near + bonus


def group_peers(peers: Sequence[tuple[str, Topology]]) -> dict[Paths, int]:
    groups: dict[Paths, int] = {}
    for _, topo in peers:
        key = paths(topo)
        groups[key] = groups.get(key, 0) + 1
    return groups


def topology_raw(
    node_name: str, node: Topology, peers: Sequence[tuple[str, Topology]], *, in_job: bool
) -> float:
    """Rule 3: raw 0..10 for one candidate node; `peers` are (node name, topology) of placed peers."""
    same = sum(1 for name, _ in peers if name == node_name)
    return raw_from_groups(paths(node), node.rdma, group_peers(peers), same_node=same, in_job=in_job)


def raw_by_level_counts(
    levels: npt.NDArray[np.intp],
    rdma: npt.NDArray[np.bool_],
    peers_on: npt.NDArray[np.float64],
    total: int,
    same_node: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Rule 3 (`raw_from_groups(..., in_job=True)`) for many nodes at once.

    `levels[i]` holds node i's interned (leaf, spine, zone) path ids, -1 where the level's value
    is unknown; `peers_on[id + 1]` is how many placed peers sit on path `id` (slot 0 is 0);
    `total` is the number of placed peers; `same_node[i]` how many of them are on node i itself
    (default none). Full paths nest (an equal leaf path means equal spine and zone paths), so the
    peers closest at each level follow from three counts. The sums are integers, exact in floating
    point, so the result equals `raw_from_groups` bit for bit.
    """
    known = levels >= 0
    leaf, spine, zone = (peers_on[levels[:, k] + 1] for k in range(3))
    spine_only = spine - leaf * known[:, 1]
    zone_only = zone - (leaf + spine_only) * known[:, 2]
    near = np.zeros(len(levels))
    if total:
        score = SAME_LEAF * leaf + SAME_SPINE * spine_only + SAME_ZONE * zone_only
        if same_node is not None:  # those count SAME_LEAF instead of their closeness to the node itself
            itself = np.where(
                known[:, 0],
                SAME_LEAF,
                np.where(known[:, 1], SAME_SPINE, np.where(known[:, 2], SAME_ZONE, 0.0)),
            )
            score = score + same_node * (SAME_LEAF - itself)
        near = score / total
    bonus: npt.NDArray[np.float64] = np.where(rdma, RDMA_BONUS, 0.0)
    return CLOSENESS_SHARE * near + bonus
