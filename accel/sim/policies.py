"""Placement policies replayed by the simulator (benchmark doc, section 4).

Each policy scores one node state for one pod: `score(state, pod) -> (raw score, devices)`; the
runner caches that per (state id, pod shape) until `version` changes, takes the highest score and
breaks ties with the run's fixed node priority. Baselines are the FGD simulator's integer formulas;
`fgd` and `accel` call the shared functions in `accel.placement.fragmentation`.
"""

from __future__ import annotations

from collections.abc import Iterable

from accel.placement.fragmentation import fgd_score, fragmentation_score, lowest_free_devices
from accel.placement.shapes import MAX_SPEC_GPU_MILLI, MILLI, ClusterContext, NodeShape, PodShape
from accel.placement.workload_mix import TypicalMix, WorkloadHistogram
from accel.sim.cluster import NodeState, pod_tag
from accel.sim.fgd_exact import GoExactMix, go_typical_pods
from accel.sim.trace import TracePod
from accel.sim.workload import fgd_key

MAX_SPEC_CPU_MILLI = 128000
POLICY_NAMES = ("random", "dotprod", "clustering", "packing", "bestfit", "fgd", "accel")


def best_devices(node: NodeShape, pod: PodShape) -> tuple[int, ...]:
    """Open-Gpu-Share `best`: shared pod -> the tightest fitting device (lowest index on ties)."""
    if not pod.is_shared:
        return lowest_free_devices(node, pod)
    fitting = [(f, i) for i, f in enumerate(node.free_milli) if f >= pod.gpu_milli]
    return (min(fitting)[1],) if fitting else ()


class Policy:
    """Base: deterministic scores, no normalisation, nothing learned."""

    name = ""
    normalise = False  # min-max NormalizeScore over feasible nodes (BestFit)
    version = 0  # bump to invalidate the runner's score cache

    def observe(self, pod: PodShape) -> None:
        """Called once per arriving pod, before it is scored."""

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        raise NotImplementedError


class RandomPolicy(Policy):
    """Uniform node among feasible ones, uniform fitting device: the runner draws both."""

    name = "random"


class DotProdPolicy(Policy):
    name = "dotprod"

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        node = state.shape
        dot = (node.cpu_left_milli / MAX_SPEC_CPU_MILLI) * (pod.cpu_milli / MAX_SPEC_CPU_MILLI) + (
            sum(node.free_milli) / MAX_SPEC_GPU_MILLI
        ) * (pod.total_gpu_milli / MAX_SPEC_GPU_MILLI)
        return float(int(100 * (1 - dot / 2))), best_devices(node, pod)


class ClusteringPolicy(Policy):
    """GpuClusteringScore: prefer nodes whose GPU pods all carry this pod's tag (see `pod_tag`:
    whole-GPU pods are tagged per GPU count), then mixed nodes holding it, then idle nodes."""

    name = "clustering"

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        tag = pod_tag(pod)
        devices = best_devices(state.shape, pod)
        if tag == 0:
            return 0.0, devices
        base = 25 * (MAX_SPEC_GPU_MILLI - sum(state.shape.free_milli)) // MAX_SPEC_GPU_MILLI
        if state.tags & tag:
            return float(base + (75 if state.tags == tag else 50)), devices
        return float(base + (25 if state.tags == 0 else 0)), devices


class PackingPolicy(Policy):
    name = "packing"

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        node = state.shape
        devices = best_devices(node, pod)
        if pod.gpu_milli <= 0:
            return 0.0, devices
        free = node.free_milli
        fully_free = sum(1 for f in free if f == MILLI)
        if fully_free == len(free):
            return float(max(33 - fully_free, fully_free)), devices
        need, use_free, used = pod.gpu_count, 0, []
        for i in sorted(range(len(free)), key=lambda j: free[j]):
            if need == 0:
                break
            if free[i] >= pod.gpu_milli:
                need -= 1
                used.append(i)
                use_free += free[i] == MILLI
        if use_free > 0:
            return float(max(50 - use_free, 33)), devices
        ratio = sum(free[i] * 100 // MILLI for i in used)
        return float(max(100 - ratio // 10, 50)), devices


class BestFitPolicy(Policy):
    name = "bestfit"
    normalise = True

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        node = state.shape
        cpu = (node.cpu_left_milli - pod.cpu_milli) / MAX_SPEC_CPU_MILLI
        gpu = (sum(node.free_milli) - pod.total_gpu_milli) / MAX_SPEC_GPU_MILLI
        return float(int(100 * (1 - (0.5 * cpu + 0.5 * gpu)))), best_devices(node, pod)


class FgdPolicy(Policy):
    """Published FGD: the typical mix of the whole original file, known in advance, with the Go
    simulator's keys and arithmetic (`fgd_exact`) so that its published runs replay exactly. A bare
    `PodShape` stands for a pod whose gpu_spec lists its models once each, in sorted order."""

    name = "fgd"

    def __init__(self, all_pods: Iterable[PodShape | TracePod]) -> None:
        keyed = (
            (fgd_key(p.shape), p.gpu_spec)
            if isinstance(p, TracePod)
            else (fgd_key(p), "|".join(sorted(p.gpu_types)))
            for p in all_pods
        )
        self.mix = GoExactMix(go_typical_pods(keyed))

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        score, devices = fgd_score(state.shape, pod, self.mix)
        return float(score), devices


class AccelPolicy(Policy):
    """accel's scorer with a mix learned online from the pods seen so far (no advance knowledge).

    The compiled mix is refreshed after 1, 2, 4, ... observations (doubling), then every
    `refresh_every`. A refresh empties the score caches, so refreshing geometrically keeps early
    learning fast while the run stays cheap: about a dozen refreshes for 8k pods instead of 32.
    `context` is the cluster's static GPU inventory (models and counts), which any scheduler knows;
    it is not workload knowledge. The histogram keys pods by FGD's shape (no memory) but learns
    their memory per GPU milli beside it, for the stranding term's memory side.
    """

    name = "accel"

    def __init__(self, *, half_life: float = 4000.0, refresh_every: int = 2048,
                 context: ClusterContext | None = None) -> None:
        self.histogram = WorkloadHistogram(half_life=half_life)
        self.context = context
        self.refresh_every = refresh_every
        self.mix = TypicalMix(())
        self._next_refresh = 1

    def observe(self, pod: PodShape) -> None:
        self.histogram.observe(fgd_key(pod), memory_mib=pod.memory_mib)
        if self.histogram.observations >= self._next_refresh:
            self.mix = self.histogram.mix()
            self.version += 1
            step = min(self._next_refresh, self.refresh_every)
            self._next_refresh += step

    def score(self, state: NodeState, pod: PodShape) -> tuple[float, tuple[int, ...]]:
        return fragmentation_score(state.shape, pod, self.mix, context=self.context)


def make_policy(
    name: str, all_pods: Iterable[PodShape | TracePod], nodes: Iterable[NodeShape] = ()
) -> Policy:
    """A fresh policy by name (see POLICY_NAMES); `all_pods` is only used by `fgd`, `nodes` (the
    cluster inventory) only by `accel`."""
    simple: dict[str, type[Policy]] = {
        "random": RandomPolicy,
        "dotprod": DotProdPolicy,
        "clustering": ClusteringPolicy,
        "packing": PackingPolicy,
        "bestfit": BestFitPolicy,
    }
    if name == "fgd":
        return FgdPolicy(all_pods)
    if name == "accel":
        return AccelPolicy(context=ClusterContext.from_nodes(nodes))
    if name not in simple:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return simple[name]()
