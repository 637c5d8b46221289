"""Placement shapes: what a pod asks for and what a node has free, as the fragmentation math sees them.

Shared by the FGD scorer, the workload mix, the trace simulator and the scheduler extender.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MILLI = 1000
MAX_SPEC_GPU_MILLI = 8000
#: Default share of observed pods that the typical mix must cover (FGD: 95 %).
DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True, slots=True)
class PodShape:
    """What a pod asks for, as far as placement is concerned.

    `gpu_milli` is per GPU (0..1000; 0 = CPU-only pod); `gpu_types` empty means any GPU model.
    """

    cpu_milli: int
    gpu_milli: int
    gpu_count: int
    gpu_types: frozenset[str] = frozenset()
    memory_mib: int = 0

    def sort_key(self) -> tuple[int, int, int, str]:
        """FGD's tie order for equally popular shapes: larger (cpu, milli, count, type) first."""
        return (self.cpu_milli, self.gpu_milli, self.gpu_count, "|".join(sorted(self.gpu_types)))

    @property
    def is_shared(self) -> bool:
        """One GPU, partially: the only case where the device choice inside a node is scored."""
        return self.gpu_count == 1 and 0 < self.gpu_milli < MILLI

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli


@dataclass(frozen=True, slots=True)
class NodeShape:
    """A node's free resources: `free_milli[i]` is device i's idle milli (1000 = fully free)."""

    gpu_type: str
    free_milli: tuple[int, ...]
    cpu_left_milli: int
    memory_left_mib: int = 0


Typical = tuple[tuple[PodShape, float], ...]


def pod_fits(node: NodeShape, pod: PodShape) -> bool:
    """The simulator's filter: CPU, memory, GPU model and per-device milli (Open-Gpu-Share)."""
    if pod.cpu_milli > node.cpu_left_milli or pod.memory_mib > node.memory_left_mib:
        return False
    if pod.gpu_milli <= 0:
        return True
    if not node.free_milli or (pod.gpu_types and node.gpu_type not in pod.gpu_types):
        return False
    return sum(1 for f in node.free_milli if f >= pod.gpu_milli) >= pod.gpu_count


def shape_frag(free: tuple[int, ...], cpu_left: int, gpu_type: str, m: PodShape) -> int:
    """Rule 1: fragment of a node (free devices, cpu, model) with respect to typical pod m."""
    idle = sum(free)
    if m.gpu_milli <= 0 or cpu_left < m.cpu_milli or (m.gpu_types and gpu_type not in m.gpu_types):
        return idle
    if sum(1 for f in free if f >= m.gpu_milli) < m.gpu_count:
        return idle
    return sum(f for f in free if f < m.gpu_milli)


@dataclass(frozen=True, slots=True)
class ClusterContext:
    """Cluster-wide facts for the accel scorer: each GPU model's share of all GPU devices.

    Static inventory only (no usage), so scores stay cacheable per node state. The extender can
    build it from its node list with `from_nodes`, exactly as the simulator does.
    """

    gpu_share: tuple[tuple[str, float], ...]

    @classmethod
    def from_nodes(cls, nodes: Iterable[NodeShape]) -> ClusterContext:
        counts: dict[str, int] = {}
        for node in nodes:
            if node.free_milli:
                counts[node.gpu_type] = counts.get(node.gpu_type, 0) + len(node.free_milli)
        total = sum(counts.values())
        return cls(tuple(sorted((t, c / total) for t, c in counts.items())) if total else ())
