"""GPU fragmentation math shared by the scheduler extender and the trace simulator.

This is the single implementation of FGD ("Beware of Fragmentation", Weng et al., USENIX ATC'23)
and of accel's own fragmentation scorer. The extender and `accel simulate` both call these
functions; there is no second copy.

Rules (see docs/fragmentation-benchmark.md, section 3):
1. A node's fragmentation w.r.t. a typical pod m is the node's idle GPU milli R, except when m
   fits (GPU type, per-device milli, count and CPU), where it is only the idle milli of the
   devices too small for m.
2. F(n) = sum_m p_m * frag_m(n), in milli-GPU. Memory never enters F.
3. FGD's score is int(sigmoid((F(n) - F(n')) / 1000) * 100): truncated to 0..100 on purpose; the
   truncation creates ties that the caller breaks with a fixed node priority.
4. The accel score is FGD's fragmentation delta plus a CPU-stranding term, on a coarser integer
   scale, measured against a workload mix *learned online* (WorkloadHistogram), with no advance
   knowledge of the trace. Stranding: a node whose CPU left cannot feed its idle GPUs at the
   mix's CPU-per-GPU ratio will strand the excess GPU milli (see `stranded_gpu_milli`). With a
   `ClusterContext` (GPU capacity share per model), placing GPU pods on models that the learned
   mix's model-constrained pods need beyond their capacity share is penalised (`type_pressure`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

MILLI = 1000
MAX_SPEC_GPU_MILLI = 8000
#: Default share of observed pods that the typical mix must cover (FGD: 95 %).
DEFAULT_THRESHOLD = 0.95
#: Score steps of the accel scorer (FGD uses 100); see `fragmentation_score`.
ACCEL_SCORE_LEVELS = 50
#: Weight of the CPU-stranding term against FGD's fragmentation delta (both in milli-GPU).
ACCEL_STRAND_WEIGHT = 1.0
#: Weight of the GPU-model scarcity penalty (milli-GPU per placed GPU milli at full pressure).
ACCEL_SCARCITY_WEIGHT = 0.3


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


def _shape_frag(free: tuple[int, ...], cpu_left: int, gpu_type: str, m: PodShape) -> int:
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


class TypicalMix:
    """A frozen typical-pod mix with memoised F(n); build once per distribution, reuse per pod.

    Memo key is (model, sorted free milli, cpu left): F does not depend on device order or memory.
    `cpu_per_gpu_milli` is the mix's CPU milli requested per GPU milli by its GPU pods (None when
    the mix has no GPU pod); the stranding term of `fragmentation_score` uses it.
    """

    __slots__ = ("_count", "_cpu", "_inverse", "_memo", "_milli", "_pressure", "_prob", "_type_ok",
                 "_unique_milli", "cpu_per_gpu_milli", "type_demand", "typical")

    def __init__(self, typical: Typical) -> None:
        self.typical = typical
        self._memo: dict[tuple[str, tuple[int, ...], int], float] = {}
        self._prob = np.array([p for _, p in typical], dtype=np.float64)
        self._cpu = np.array([m.cpu_milli for m, _ in typical], dtype=np.int64)
        self._milli = np.array([m.gpu_milli for m, _ in typical], dtype=np.int64)
        self._count = np.array([m.gpu_count for m, _ in typical], dtype=np.int64)
        self._unique_milli, self._inverse = np.unique(self._milli, return_inverse=True)
        self._type_ok: dict[str, npt.NDArray[np.bool_]] = {}
        gpu = math.fsum(p * m.total_gpu_milli for m, p in typical if m.gpu_milli > 0)
        cpu = math.fsum(p * m.cpu_milli for m, p in typical if m.gpu_milli > 0)
        self.cpu_per_gpu_milli: float | None = cpu / gpu if gpu > 0 and cpu > 0 else None
        self.type_demand: dict[str, float] = {}  # model -> share of GPU demand that needs it
        for m, p in typical if gpu > 0 else ():
            for model in m.gpu_types if m.gpu_milli > 0 else ():
                share = p * m.total_gpu_milli / gpu / len(m.gpu_types)
                self.type_demand[model] = self.type_demand.get(model, 0.0) + share
        self._pressure: dict[ClusterContext, dict[str, float]] = {}

    def type_pressure(self, context: ClusterContext) -> dict[str, float]:
        """Per model: constrained demand share / capacity share, capped at 1 (0 = not scarce)."""
        pressure = self._pressure.get(context)
        if pressure is None:
            capacity = dict(context.gpu_share)
            pressure = {t: min(1.0, d / capacity[t]) for t, d in self.type_demand.items() if capacity.get(t)}
            self._pressure[context] = pressure
        return pressure

    def fragmentation(self, gpu_type: str, free: tuple[int, ...], cpu_left: int) -> float:
        key = (gpu_type, tuple(sorted(free)), cpu_left)
        value = self._memo.get(key)
        if value is None:
            value = self._compute(gpu_type, free, cpu_left) if self.typical else 0.0
            self._memo[key] = value
        return value

    def _types_ok(self, gpu_type: str) -> npt.NDArray[np.bool_]:
        ok = self._type_ok.get(gpu_type)
        if ok is None:
            ok = np.array([m.gpu_milli > 0 and (not m.gpu_types or gpu_type in m.gpu_types) for m, _ in self.typical])
            self._type_ok[gpu_type] = ok
        return ok

    def _compute(self, gpu_type: str, free: tuple[int, ...], cpu_left: int) -> float:
        """Rule 1 summed over the mix, vectorised; the terms p_m * frag_m equal `_shape_frag`'s."""
        idle = sum(free)
        devices = np.array(free, dtype=np.int64)[None, :]
        below = devices < self._unique_milli[:, None]
        fitting = (~below).sum(axis=1)[self._inverse]
        small = np.where(below, devices, 0).sum(axis=1)[self._inverse]
        fits = self._types_ok(gpu_type) & (self._cpu <= cpu_left) & (fitting >= self._count)
        return math.fsum(self._prob * np.where(fits, small, idle))


def as_mix(typical: Typical | TypicalMix | WorkloadHistogram) -> TypicalMix:
    """Accept a histogram, a typical tuple or an already compiled mix."""
    if isinstance(typical, TypicalMix):
        return typical
    if isinstance(typical, WorkloadHistogram):
        return typical.mix()
    return TypicalMix(typical)


def node_fragmentation(node: NodeShape, typical: Typical | TypicalMix) -> float:
    """FGD's F(n) in milli-GPU (rule 2)."""
    return as_mix(typical).fragmentation(node.gpu_type, node.free_milli, node.cpu_left_milli)


def stranded_gpu_milli(idle_milli: int, cpu_left_milli: int, cpu_per_gpu_milli: float) -> float:
    """Idle GPU milli that the node's CPU left cannot feed at `cpu_per_gpu_milli` CPU per GPU.

    Why: on the openb trace CPU is ~80 % subscribed and GPU pods ask ~11 cores per GPU, so nodes
    such as 96-core/8-GPU ones run out of CPU with GPUs idle. FGD only sees this once CPU left
    drops below a typical pod's request; this term sees it as soon as the balance tips.
    """
    return max(0.0, idle_milli - cpu_left_milli / cpu_per_gpu_milli)


def _sigmoid_score(delta: float) -> int:
    """Rule 3: int(sigmoid(delta / 1000) * 100), with Go's truncation toward zero."""
    return int(100.0 / (1.0 + math.exp(-delta / MILLI)))


def _fill_least_idle(free: tuple[int, ...], pod: PodShape) -> tuple[int, ...]:
    """FGD's `nodeRes.Sub(pod)`: take the least-idle sufficient devices, ascending."""
    left = list(free)
    need = pod.gpu_count if pod.gpu_milli > 0 else 0
    for i in sorted(range(len(left)), key=lambda j: left[j]):
        if need == 0:
            break
        if left[i] >= pod.gpu_milli:
            left[i] -= pod.gpu_milli
            need -= 1
    return tuple(left)


def lowest_free_devices(node: NodeShape, pod: PodShape) -> tuple[int, ...]:
    """Whole-GPU placement used by every policy: the lowest-index devices with enough milli."""
    if pod.gpu_milli <= 0:
        return ()
    chosen = [i for i, f in enumerate(node.free_milli) if f >= pod.gpu_milli]
    return tuple(chosen[: pod.gpu_count])


def _fgd_deltas(node: NodeShape, pod: PodShape, mix: TypicalMix) -> list[tuple[float, tuple[int, ...]]]:
    """F(n) - F(n') per candidate placement (per device for shared pods, else one placement)."""
    before = mix.fragmentation(node.gpu_type, node.free_milli, node.cpu_left_milli)
    cpu_after = node.cpu_left_milli - pod.cpu_milli
    if not pod.is_shared:
        after = mix.fragmentation(node.gpu_type, _fill_least_idle(node.free_milli, pod), cpu_after)
        return [(before - after, lowest_free_devices(node, pod))]
    out: list[tuple[float, tuple[int, ...]]] = []
    for i, f in enumerate(node.free_milli):
        if f >= pod.gpu_milli:
            free = (*node.free_milli[:i], f - pod.gpu_milli, *node.free_milli[i + 1 :])
            out.append((before - mix.fragmentation(node.gpu_type, free, cpu_after), (i,)))
    return out


def fgd_score(node: NodeShape, pod: PodShape, typical: Typical | TypicalMix) -> tuple[int, tuple[int, ...]]:
    """The published FGD score 0..100 and the devices it picks (first best device on ties).

    The caller must have checked `pod_fits`; an unfit pod gets (0, ()).
    """
    best: tuple[int, tuple[int, ...]] = (-1, ())
    for delta, devices in _fgd_deltas(node, pod, as_mix(typical)):
        score = _sigmoid_score(delta)
        if score > best[0]:
            best = (score, devices)
    return best if best[0] >= 0 else (0, ())


def _accel_adjust(node: NodeShape, pod: PodShape, mix: TypicalMix, strand_weight: float,
                  context: ClusterContext | None, scarcity_weight: float) -> float:
    """accel's terms added to FGD's delta, in milli-GPU (higher = better placement)."""
    adjust = 0.0
    ratio = mix.cpu_per_gpu_milli
    if strand_weight and ratio:
        idle = sum(node.free_milli)
        before = stranded_gpu_milli(idle, node.cpu_left_milli, ratio)
        after = stranded_gpu_milli(idle - pod.total_gpu_milli, node.cpu_left_milli - pod.cpu_milli, ratio)
        adjust += strand_weight * (before - after)
    if context is not None and scarcity_weight and pod.gpu_milli > 0:
        pressure = mix.type_pressure(context).get(node.gpu_type, 0.0)
        adjust -= scarcity_weight * pod.total_gpu_milli * pressure
    return adjust


def fragmentation_score(
    node: NodeShape,
    pod: PodShape,
    workload: WorkloadHistogram | Typical | TypicalMix,
    *,
    levels: int = ACCEL_SCORE_LEVELS,
    strand_weight: float = ACCEL_STRAND_WEIGHT,
    context: ClusterContext | None = None,
    scarcity_weight: float = ACCEL_SCARCITY_WEIGHT,
) -> tuple[float, tuple[int, ...]]:
    """accel's fragmentation score (higher = better) and the devices to use.

    delta = FGD's fragmentation decrease F(n) - F(n') under the *learned* mix (rule 4)
      + `strand_weight` x the decrease of `stranded_gpu_milli` (at the mix's CPU-per-GPU ratio)
      - `scarcity_weight` x the pod's GPU milli x the node model's `type_pressure` (only with a
        `context`: keeps models that constrained pods need free for them),
    pushed through FGD's sigmoid and truncated to `levels` steps instead of 100. Coarser steps
    make near-equal nodes tie, and ties go to the caller's fixed node order, which packs pods onto
    the same nodes. On openb (10 seeds, online mix) default went 4.72 % -> 4.17 % unallocated with
    the stranding term (FGD 4.74 %); see docs/simulation-results.md for all 17 workloads.
    """
    mix = as_mix(workload)
    adjust = _accel_adjust(node, pod, mix, strand_weight, context, scarcity_weight)
    best: tuple[float, tuple[int, ...]] = (-1.0, ())
    for delta, devices in _fgd_deltas(node, pod, mix):
        score = float(int(levels / (1.0 + math.exp(-(delta + adjust) / MILLI))))
        if score > best[0]:
            best = (score, devices)
    return best if best[0] >= 0 else (0.0, ())


class WorkloadHistogram:
    """Online, exponentially decaying histogram of the pod shapes seen so far.

    Each observation's weight halves every `half_life` later observations (math.inf = no decay,
    which with `from_shapes` reproduces FGD's advance knowledge). Weights are stored scaled by a
    growing factor so that `observe` is O(1); they are renormalised before they overflow.
    """

    _RESCALE_AT = 1e200

    def __init__(self, *, half_life: float = 2000.0) -> None:
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0 observations, got {half_life!r}")
        self.half_life = half_life
        self._growth = 1.0 if math.isinf(half_life) else 2.0 ** (1.0 / half_life)
        self._scale = 1.0
        self._weights: dict[PodShape, float] = {}
        self.observations = 0
        self._cached: dict[float, Typical] = {}
        self._mix: TypicalMix | None = None

    @classmethod
    def from_shapes(cls, shapes: Iterable[PodShape]) -> WorkloadHistogram:
        """Advance knowledge (published FGD): every shape counted once, no decay."""
        hist = cls(half_life=math.inf)
        for shape in shapes:
            hist.observe(shape)
        return hist

    def observe(self, shape: PodShape, weight: float = 1.0) -> None:
        """Count one arriving pod; older observations decay relative to it."""
        if self._growth != 1.0:
            self._scale *= self._growth
        self._weights[shape] = self._weights.get(shape, 0.0) + weight * self._scale
        self.observations += 1
        self._cached.clear()
        self._mix = None
        if self._scale > self._RESCALE_AT:
            self._weights = {k: v / self._scale for k, v in self._weights.items()}
            self._scale = 1.0

    def typical(self, threshold: float = DEFAULT_THRESHOLD) -> Typical:
        """Most popular shapes until their share reaches `threshold`, renormalised to sum 1."""
        cached = self._cached.get(threshold)
        if cached is not None:
            return cached
        ranked = sorted(self._weights.items(), key=lambda kv: (kv[1], kv[0].sort_key()), reverse=True)
        total = sum(w for _, w in ranked)
        kept: list[tuple[PodShape, float]] = []
        covered = 0.0
        for shape, w in ranked:
            if covered >= threshold * total:
                break
            kept.append((shape, w))
            covered += w
        result = tuple((shape, w / covered) for shape, w in kept) if covered > 0 else ()
        self._cached[threshold] = result
        return result

    def mix(self) -> TypicalMix:
        """The compiled default-threshold mix (memoised until the next observation)."""
        if self._mix is None:
            self._mix = TypicalMix(self.typical())
        return self._mix

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, so a server can persist what it has learned."""
        shapes = [
            {
                "cpu_milli": s.cpu_milli,
                "gpu_milli": s.gpu_milli,
                "gpu_count": s.gpu_count,
                "gpu_types": sorted(s.gpu_types),
                "memory_mib": s.memory_mib,
                "weight": w / self._scale,
            }
            for s, w in self._weights.items()
        ]
        half_life = None if math.isinf(self.half_life) else self.half_life
        return {"half_life": half_life, "observations": self.observations, "shapes": shapes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadHistogram:
        """Inverse of `to_dict`; raises ValueError naming the bad field."""
        half_life = data.get("half_life")
        hist = cls(half_life=math.inf if half_life is None else float(half_life))
        for i, item in enumerate(data.get("shapes", [])):
            try:
                shape = PodShape(
                    cpu_milli=int(item["cpu_milli"]),
                    gpu_milli=int(item["gpu_milli"]),
                    gpu_count=int(item["gpu_count"]),
                    gpu_types=frozenset(str(t) for t in item.get("gpu_types", [])),
                    memory_mib=int(item.get("memory_mib", 0)),
                )
                hist._weights[shape] = hist._weights.get(shape, 0.0) + float(item["weight"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"shapes[{i}]: {exc!r}; expected cpu_milli, gpu_milli, gpu_count, weight") from exc
        hist.observations = int(data.get("observations", 0))
        return hist
