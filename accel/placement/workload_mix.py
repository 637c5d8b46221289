"""The workload distribution the fragmentation score is measured against.

`WorkloadHistogram` learns it online (an exponentially decaying histogram of observed pod shapes;
`from_shapes` counts a fixed set once, with FGD's typical-pod rule on model sets); `TypicalMix` is
one compiled snapshot of it (FGD's typical pods) with F(n) memoised per node state. The replay of
the published FGD runs keys shapes by their raw gpu_spec string instead (`accel.sim.fgd_exact`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from accel.placement.shapes import DEFAULT_THRESHOLD, MILLI, ClusterContext, PodShape, Typical


@functools.lru_cache(maxsize=128)  # ~36 KB a table
def residue_table(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Per free milli f in 0..1000: f minus the largest sum of `sizes` (repeats allowed) <= f.

    A pure function of `sizes`, cached across mixes: the learned mix is rebuilt every
    `refresh_every` pods (accel.placement.state) while its common sizes rarely change, and
    building a table (a 1000-step Python loop, ~1 ms) was the largest single cost of the first
    prioritize after each refresh, which made the extender's p99 (bench_extender)."""
    reachable = [True] + [False] * MILLI
    for f in range(1, MILLI + 1):
        reachable[f] = any(x <= f and reachable[f - x] for x in sizes)
    out, best = [], 0
    for f in range(MILLI + 1):
        best = f if reachable[f] else best
        out.append(f - best)
    return tuple(out)


class TypicalMix:
    """A frozen typical-pod mix with memoised F(n); build once per distribution, reuse per pod.

    Memo key is (model, sorted free milli, cpu left): F does not depend on device order or memory.
    `cpu_per_gpu_milli` is the mix's CPU milli requested per GPU milli by its GPU pods (None when
    the mix has no GPU pod); the stranding term of `fragmentation_score` uses it. `fill_residue`
    (what the mix's common sizes cannot close on a node's partly used devices) feeds its fill term,
    `fill_lock_in` (what a shared pod locks in on a partly used device) its lock-in term.
    `memory_per_gpu_milli` is the observed GPU pods' memory MiB per GPU milli (None when no pod
    brought a memory request, as in the extender, whose shapes carry none): with it the stranding
    term also counts idle GPUs that the node's memory left cannot feed.
    """

    __slots__ = ("_count", "_cpu", "_fill_memo", "_fill_sizes", "_fitting_tables", "_inverse",
                 "_memo", "_milli", "_pressure", "_prob", "_type_ok", "_unique_milli", "cpu_per_gpu_milli",
                 "memory_per_gpu_milli", "type_demand", "typical")

    def __init__(self, typical: Typical, *, memory_per_gpu_milli: float | None = None) -> None:
        self.typical = typical
        self.memory_per_gpu_milli = memory_per_gpu_milli
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
        self._fill_sizes: dict[float, tuple[tuple[int, int], ...]] = {}
        self._fill_memo: dict[tuple[tuple[int, ...], int, float], int] = {}
        self._fitting_tables: dict[tuple[int, float], tuple[int, ...]] = {}

    def fill_sizes(self, min_share: float) -> tuple[tuple[int, int], ...]:
        """The per-device sizes the mix keeps asking for: (milli, least CPU milli of a pod that size).

        A shared size (one GPU, < 1000 milli) counts when it has at least `min_share` of the mix's
        shared-pod probability; 1000 counts when the mix has a whole-GPU pod. Rare sizes are left
        out on purpose: a device that only a rare size could close will most likely stay idle.
        Sizes that are spoken for are left out too: when the common sizes that fit the gap a
        common size c > 500 leaves (<= 1000 - c) are together rarer than c, c's gaps absorb them. On
        openb the 160s (about 2.5 % of shared pods) all go into the 190 that each 810 leaves, so a
        210 gap (470 + 320) is not "closed to 50 by a 160"; it stays 210.
        """
        sizes = self._fill_sizes.get(min_share)
        if sizes is None:
            share: dict[int, float] = {}
            cpu: dict[int, int] = {}
            for m, p in self.typical:
                if m.gpu_milli <= 0:
                    continue
                size = m.gpu_milli if m.is_shared else MILLI
                share[size] = share.get(size, 0.0) + p
                cpu[size] = min(cpu.get(size, m.cpu_milli), m.cpu_milli)
            shared_total = sum(p for size, p in share.items() if size < MILLI)
            common = [size for size, p in share.items() if size == MILLI or p >= min_share * shared_total]
            spoken_for: set[int] = set()
            for c in common:  # c > 500: one per device, so only smaller sizes close its gap
                sliver = [size for size in common if size <= MILLI - c] if 2 * c > MILLI else []
                if sliver and sum(share[size] for size in sliver) <= share[c]:
                    spoken_for.update(sliver)
            sizes = tuple(sorted((size, cpu[size]) for size in common if size not in spoken_for))
            self._fill_sizes[min_share] = sizes
        return sizes

    def _fitting_table(self, cpu_left: int, min_share: float) -> tuple[int, ...]:
        """The residue table of the fill sizes whose pods fit `cpu_left` (memoised per CPU left: the
        scorer asks for it once per candidate device)."""
        key = (cpu_left, min_share)
        table = self._fitting_tables.get(key)
        if table is None:
            sizes = tuple(size for size, cpu in self.fill_sizes(min_share) if cpu <= cpu_left)
            table = self._fitting_tables[key] = residue_table(sizes)
        return table

    def fill_residue(self, free: tuple[int, ...], cpu_left: int, min_share: float) -> int:
        """GPU milli on the node's partly used devices that the mix's common sizes cannot close.

        Each partly used device (0 < free < 1000) is topped up, in the best combination, with the
        `fill_sizes` whose pods fit the node's CPU left; what stays over is counted. A fully free
        device counts 0 (whole-GPU pods take it; the stranding term watches its CPU). So 470 + 470
        leaves 60, 650 + 320 leaves 30, a 230 in a 650's 350 leaves 120 no common size closes, and a
        device on a node out of CPU keeps all its idle milli.
        """
        key = (tuple(sorted(free)), cpu_left, min_share)
        value = self._fill_memo.get(key)
        if value is None:
            table = self._fitting_table(cpu_left, min_share)
            value = sum(table[f] for f in free if 0 < f < MILLI)
            self._fill_memo[key] = value
        return value

    def fill_lock_in(self, device_free: int, milli: int, cpu_left: int, min_share: float) -> int:
        """Residue a shared pod of `milli` locks in on a partly used device beyond its fresh-device one.

        `fill_residue` counts a gap as already lost to its best closure: a 550's 450 is "130" because
        a 320 would leave 130, so moving a 320 in looks free. It is not: the same 320 on a fresh
        device leaves 680, which a 650 (or two more 320s) closes to 30-40. The lock-in is the
        residue the pod leaves in `device_free` minus the residue it would leave on a fresh device
        (same common sizes, same CPU left), never below 0: 130 - 30 = 100 for that 320, 0 for a 320
        in a 650's 350 or a 470 in a 470's 530.
        """
        if device_free >= MILLI or milli > device_free:
            return 0
        table = self._fitting_table(cpu_left, min_share)
        return max(0, table[device_free - milli] - table[MILLI - milli])

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
            ok = np.array(
                [m.gpu_milli > 0 and (not m.gpu_types or gpu_type in m.gpu_types) for m, _ in self.typical]
            )
            self._type_ok[gpu_type] = ok
        return ok

    def _device_fit(self, free: tuple[int, ...]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per typical pod: how many devices have its per-GPU milli, and the milli on those that
        do not (its fragment when it fits), computed once per distinct milli."""
        devices = np.array(free, dtype=np.int64)[None, :]
        below = devices < self._unique_milli[:, None]
        fitting = (~below).sum(axis=1)[self._inverse]
        small = np.where(below, devices, 0).sum(axis=1)[self._inverse]
        return fitting, small

    def _compute(self, gpu_type: str, free: tuple[int, ...], cpu_left: int) -> float:
        """Rule 1 summed over the mix, vectorised; the terms p_m * frag_m equal `shape_frag`'s."""
        fitting, small = self._device_fit(free)
        fits = self._types_ok(gpu_type) & (self._cpu <= cpu_left) & (fitting >= self._count)
        return math.fsum(self._prob * np.where(fits, small, sum(free)))


class WorkloadHistogram:
    """Online, exponentially decaying histogram of the pod shapes seen so far.

    Each observation's weight halves every `half_life` later observations (math.inf = no decay,
    as `from_shapes` uses for a fixed, fully known distribution). Weights are stored scaled by a
    growing factor so that `observe` is O(1); they are renormalised before they overflow. Beside the
    shape counts it keeps, with the same decay, the GPU pods' memory request per GPU milli
    (`memory_per_gpu_milli`): memory is not part of a shape (FGD's typical pods ignore it), but a
    node whose memory runs out strands its idle GPUs just as one whose CPU runs out does.
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
        self._gpu_memory_mib = 0.0  # decayed sums over GPU pods, scaled like the weights
        self._gpu_milli = 0.0
        self._cached: dict[float, Typical] = {}
        self._mix: TypicalMix | None = None

    @classmethod
    def from_shapes(cls, shapes: Iterable[PodShape]) -> WorkloadHistogram:
        """A fixed, fully known distribution: every shape counted once, no decay."""
        hist = cls(half_life=math.inf)
        for shape in shapes:
            hist.observe(shape)
        return hist

    def observe(self, shape: PodShape, weight: float = 1.0, *, memory_mib: int | None = None) -> None:
        """Count one arriving pod; older observations decay relative to it.

        `memory_mib` is the pod's memory request when `shape` (the histogram key) leaves it out, as
        the simulator's FGD-style keys do; by default it is `shape.memory_mib`.
        """
        if self._growth != 1.0:
            self._scale *= self._growth
        self._weights[shape] = self._weights.get(shape, 0.0) + weight * self._scale
        if shape.gpu_milli > 0:
            memory = shape.memory_mib if memory_mib is None else memory_mib
            self._gpu_memory_mib += weight * self._scale * memory
            self._gpu_milli += weight * self._scale * shape.total_gpu_milli
        self.observations += 1
        self._cached.clear()
        self._mix = None
        if self._scale > self._RESCALE_AT:
            self._weights = {k: v / self._scale for k, v in self._weights.items()}
            self._gpu_memory_mib /= self._scale
            self._gpu_milli /= self._scale
            self._scale = 1.0

    @property
    def memory_per_gpu_milli(self) -> float | None:
        """The GPU pods' memory MiB per GPU milli (decayed like the counts); None without memory."""
        if self._gpu_memory_mib > 0 and self._gpu_milli > 0:
            return self._gpu_memory_mib / self._gpu_milli
        return None

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
            self._mix = TypicalMix(self.typical(), memory_per_gpu_milli=self.memory_per_gpu_milli)
        return self._mix
