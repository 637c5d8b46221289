"""Per-seed workload formation, as the FGD simulator does it (benchmark doc, section 1).

1. Pods are sorted by name, then shuffled: the arrival order is a random permutation.
2. The total requested GPU milli is tuned to `tune` x cluster capacity: below target, pods are
   resampled with replacement from the name-sorted file and appended (stopping at the first
   draw whose *per-GPU* milli would overshoot - the simulator's quirk); above target, random
   pods are deleted from the shuffled list.
3. A node priority permutation is drawn afterwards; it breaks every score tie.
Everything comes from one RNG seeded with the run seed, so all policies see the same sequence.
Python's RNG is not Go's: per-seed numbers differ from the published ones, 10-seed means agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from accel.fragmentation import MILLI, PodShape
from accel.sim.trace import TracePod

DEFAULT_TUNE = 1.3
#: FGD counts a CPU request of 0 as 100m in its typical-pod key (GetNonzeroRequests).
NONZERO_CPU_MILLI = 100


@dataclass(frozen=True, slots=True)
class RunInput:
    """One seed's arrival sequence (indices into `pods`, name-sorted) and node priorities."""

    pods: tuple[TracePod, ...]
    arrivals: tuple[int, ...]
    node_priority: tuple[int, ...]  # node index -> rank, 0 = preferred on ties


def fgd_key(shape: PodShape) -> PodShape:
    """The shape FGD counts in its typical-pod histogram: no memory, CPU 0 -> 100m."""
    return PodShape(
        cpu_milli=shape.cpu_milli or NONZERO_CPU_MILLI,
        gpu_milli=shape.gpu_milli,
        gpu_count=shape.gpu_count,
        gpu_types=shape.gpu_types,
    )


def _tune(rng: random.Random, order: list[int], pods: list[TracePod], target: float) -> list[int]:
    total = sum(p.shape.total_gpu_milli for p in pods)
    if total < target:
        while True:
            idx = rng.randrange(len(pods))
            if total + pods[idx].shape.gpu_milli > target:
                return order
            order.append(idx)
            total += pods[idx].shape.total_gpu_milli
    while total > target:
        victim = order.pop(rng.randrange(len(order)))
        total -= pods[victim].shape.total_gpu_milli
    return order


def build_run_input(
    pods: list[TracePod], *, total_gpus: int, node_count: int, seed: int, tune: float = DEFAULT_TUNE
) -> RunInput:
    """Arrival order and node priority for one seed (rules 1-3)."""
    ordered = sorted(pods, key=lambda p: p.name)
    rng = random.Random(seed)
    rng.random()  # the simulator burns one draw in a debug log argument
    order = list(range(len(ordered)))
    rng.shuffle(order)
    order = _tune(rng, order, ordered, tune * total_gpus * MILLI)
    perm = list(range(node_count))
    rng.shuffle(perm)
    return RunInput(pods=tuple(ordered), arrivals=tuple(order), node_priority=tuple(perm))
