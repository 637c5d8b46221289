"""Cluster state for the simulator, grouped by identical node state so scores can be cached.

Invariants:
1. Nodes only fill up (no departures), so a node never returns to a state it has left; a group's
   heap of node priorities can therefore drop departed members lazily.
2. A state id (sid) names one (node shape, GPU-pod tags) value for the whole run; any cache keyed
   by (sid, pod) stays valid as long as the policy's own parameters do not change.
3. `used_gpu_milli` is the allocated GPU milli over all nodes (the allocation-ratio numerator).
4. `events` lists, in order, every sid whose group appeared or vanished; a reader that remembers
   how far it has read can update a per-pod candidate set without rescanning all groups.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from accel.placement.shapes import MILLI, NodeShape, PodShape

TAG_SHARE = 1  # "share-gpu": a pod using part of one GPU


def whole_gpu_tag(gpu_count: int) -> int:
    """The tag of a pod using `gpu_count` whole GPUs ("1-gpu", "2-gpu", ... in the simulator)."""
    if gpu_count < 1:
        raise ValueError(f"whole-GPU tag needs gpu_count >= 1, got {gpu_count}")
    return 1 << gpu_count


def pod_tag(pod: PodShape) -> int:
    """GpuClustering's pod affinity tag as one bit (0 = no GPU).

    The FGD simulator (`GetGpuAffinityFromPodAnnotation`) tags a shared pod "share-gpu" and a
    whole-GPU pod "<count>-gpu": a 1-GPU and an 8-GPU pod have *different* tags, so a node holding
    both has two affinities. (The simulator panics on multi-GPU pods with partial GPUs; they are
    tagged by count here.)
    """
    if pod.gpu_milli <= 0:
        return 0
    if pod.gpu_count == 1 and pod.gpu_milli < MILLI:
        return TAG_SHARE
    return whole_gpu_tag(pod.gpu_count)


@dataclass(frozen=True, slots=True)
class NodeState:
    shape: NodeShape
    tags: int  # bitmask of GPU-pod tags present on the node (see pod_tag)


@dataclass(slots=True)
class _Group:
    members: set[int] = field(default_factory=set)
    heap: list[tuple[int, int]] = field(default_factory=list)

    def best(self) -> tuple[int, int]:
        """(priority rank, node) of the highest-priority member."""
        while self.heap[0][1] not in self.members:
            heapq.heappop(self.heap)
        return self.heap[0]


class ClusterState:
    """Mutable node states plus the grouping by state id."""

    def __init__(self, shapes: list[NodeShape], priority: tuple[int, ...]) -> None:
        if len(shapes) != len(priority):
            raise ValueError(f"{len(shapes)} nodes but {len(priority)} priorities")
        self.priority = priority
        self.states: list[NodeState] = []
        self._sid_of: dict[NodeState, int] = {}
        self.state_by_sid: list[NodeState] = []
        self.node_sid: list[int] = []
        self.groups: dict[int, _Group] = {}
        self.events: list[int] = []
        self.capacity_milli = sum(len(s.free_milli) for s in shapes) * MILLI
        self.used_gpu_milli = 0
        for node, shape in enumerate(shapes):
            state = NodeState(shape, 0)
            self.states.append(state)
            self.node_sid.append(-1)
            self._enter(node, state)

    def _sid(self, state: NodeState) -> int:
        sid = self._sid_of.get(state)
        if sid is None:
            sid = len(self.state_by_sid)
            self._sid_of[state] = sid
            self.state_by_sid.append(state)
        return sid

    def _enter(self, node: int, state: NodeState) -> None:
        sid = self._sid(state)
        group = self.groups.get(sid)
        if group is None:
            group = self.groups[sid] = _Group()
            self.events.append(sid)
        group.members.add(node)
        heapq.heappush(group.heap, (self.priority[node], node))
        self.node_sid[node] = sid

    def place(self, node: int, pod: PodShape, devices: tuple[int, ...]) -> None:
        """Bind `pod` to `node` on `devices` (already checked to fit)."""
        old = self.states[node]
        group = self.groups[self.node_sid[node]]
        group.members.discard(node)
        if not group.members:
            del self.groups[self.node_sid[node]]
            self.events.append(self.node_sid[node])
        free = list(old.shape.free_milli)
        for i in devices:
            if free[i] < pod.gpu_milli:
                raise ValueError(
                    f"device {i} of node {node} has {free[i]} milli left, pod needs {pod.gpu_milli}"
                )
            free[i] -= pod.gpu_milli
        shape = NodeShape(
            gpu_type=old.shape.gpu_type,
            free_milli=tuple(free),
            cpu_left_milli=old.shape.cpu_left_milli - pod.cpu_milli,
            memory_left_mib=old.shape.memory_left_mib - pod.memory_mib,
        )
        new = NodeState(shape, old.tags | pod_tag(pod))
        self.states[node] = new
        self.used_gpu_milli += pod.gpu_milli * len(devices)
        self._enter(node, new)
