"""Per-seed workload formation, as the FGD simulator does it (benchmark doc, section 1).

1. Pods are sorted by name, then shuffled: the arrival order is a random permutation.
2. The total requested GPU milli is tuned to `tune` x cluster capacity: below target, pods are
   resampled with replacement from the name-sorted file and appended (stopping at the first
   draw whose *per-GPU* milli would overshoot - the simulator's quirk); above target, random
   pods are deleted from the shuffled list.
3. Before the node priority is drawn, the simulator starts its scheduler, whose informers each
   take one number from the same global source (client-go's reflector picks a random watch
   timeout); `INFORMER_DRAWS` of them.
4. The node priority is `rand.Perm` over the name-sorted nodes; it breaks every score tie.
Every draw comes from an emulation of Go's `math/rand` seeded with the run seed (`gorand.py`), in
the simulator's order, so a seed here is the published seed: for the deterministic policies the
whole allocation curve matches the published per-seed one to the CSV's rounding (0.005 pp).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from accel.placement.shapes import MILLI, PodShape
from accel.sim.gorand import GoRand, GoRandState
from accel.sim.trace import TracePod

DEFAULT_TUNE = 1.3
#: FGD counts a CPU request of 0 as 100m in its typical-pod key (GetNonzeroRequests).
NONZERO_CPU_MILLI = 100
#: Informers the simulator's kube-scheduler starts between tuning and `rand.Perm` (rule 3). Found by
#: replaying published runs: with 10, fgd/bestfit/packing/clustering/dotprod curves on default,
#: multigpu50, gpushare100, cpu250 and gpuspec33 match to 0.005 pp; any other count is off by ~0.1-0.3.
INFORMER_DRAWS = 10


@dataclass(frozen=True, slots=True)
class RunInput:
    """One seed's arrival sequence (indices into `pods`, name-sorted) and node priorities."""

    pods: tuple[TracePod, ...]
    arrivals: tuple[int, ...]
    node_priority: tuple[int, ...]  # node index -> rank, 0 = preferred on ties
    placement_rng: GoRandState  # the global source after rule 4: what the Random policy draws from

    def placement_source(self) -> GoRand:
        """A fresh generator at the post-priority point (each replay of this input gets its own)."""
        return GoRand.from_state(self.placement_rng)


def fgd_key(shape: PodShape) -> PodShape:
    """The shape FGD counts in its typical-pod histogram: no memory, CPU 0 -> 100m."""
    return PodShape(
        cpu_milli=shape.cpu_milli or NONZERO_CPU_MILLI,
        gpu_milli=shape.gpu_milli,
        gpu_count=shape.gpu_count,
        gpu_types=shape.gpu_types,
    )


def _tune(rng: GoRand, order: list[int], pods: list[TracePod], target: float) -> list[int]:
    total = sum(p.shape.total_gpu_milli for p in pods)
    if total < target:
        while True:
            idx = rng.intn(len(pods))
            if total + pods[idx].shape.gpu_milli > target:
                return order
            order.append(idx)
            total += pods[idx].shape.total_gpu_milli
    while total > target:
        victim = order.pop(rng.intn(len(order)))
        total -= pods[victim].shape.total_gpu_milli
    return order


def build_run_input(
    pods: list[TracePod],
    *,
    total_gpus: int,
    node_count: int,
    seed: int,
    tune: float = DEFAULT_TUNE,
    node_names: Sequence[str] | None = None,
) -> RunInput:
    """Arrival order and node priority for one seed (rules 1-4). `node_names` (in node index order)
    gives the name order the priority is drawn over; without it the index order is taken as it."""
    if node_names is not None and len(node_names) != node_count:
        raise ValueError(f"{len(node_names)} node names for {node_count} nodes")
    ordered = sorted(pods, key=lambda p: p.name)
    rng = GoRand(seed)
    rng.int63()  # the simulator's debug log of rand.Int(), evaluated even when not printed
    order = list(range(len(ordered)))
    rng.shuffle(order)
    order = _tune(rng, order, ordered, tune * (total_gpus * MILLI))  # Go: ratio * float64(capacity)
    for _ in range(INFORMER_DRAWS):
        rng.float64()
    by_name = (
        range(node_count) if node_names is None else sorted(range(node_count), key=lambda i: node_names[i])
    )
    ranks = rng.perm(node_count)  # the i-th node by name gets name prefix ranks[i]
    priority = [0] * node_count
    for position, node in enumerate(by_name):
        priority[node] = ranks[position]
    return RunInput(pods=tuple(ordered), arrivals=tuple(order), node_priority=tuple(priority),
                    placement_rng=rng.state())
