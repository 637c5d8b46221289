"""The published FGD policy's typical pods and F(n) with the Go simulator's own arithmetic.

`accel.placement.workload_mix` computes the same quantities the clean way (shapes keyed by their GPU-model
set, F(n) as an exactly rounded sum); this module reproduces the FGD simulator bit for bit, which
is what replaying its published runs needs (`pkg/utils/frag.go`, `pkg/type/resource.go`):

1. Typical pods are keyed by (CPU, per-GPU milli, GPU count, the `gpu_spec` string as written):
   "V100M16|V100M32" and "V100M16|V100M32|V100M32" are two keys, as in Go, although they admit
   the same nodes. Keys are ranked by count, ties by the larger (cpu, milli, count, spec string);
   keys are taken until their count reaches 95 * total / 100, and their frequencies are
   (count / total) / (kept / total), or count / total when every key is kept.
2. F(n) adds freq x amount into Go's seven per-class buckets in typical-pod order, then sums the
   buckets other than q3_satisfied in bucket order. Two mathematically equal F values computed
   along different paths can differ in the last bits, and FGD's score, int(sigmoid(dF / 1000) *
   100), turns a -1e-13 difference into 49 instead of 50. Those ties decide placements, so the
   order of additions is kept (cumulative sums are sequential; a plain sum is not).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from accel.placement.shapes import PodShape, Typical
from accel.placement.workload_mix import TypicalMix

#: FGD's `podPopularityThreshold` in the published runs (percent of all pods).
POPULARITY_THRESHOLD_PCT = 95
#: Go's bucket indices (FragRatioDataMap): q1 lack both, q2 lack GPU, q3 satisfied, q4 lack CPU,
#: xl CPU pod satisfied, xr CPU pod lacks CPU, no access.
Q1, Q2, Q3, Q4, XL, XR, NA = range(7)
_BUCKET_ROWS = np.array([Q1, Q2, Q4, XL, XR, NA])[:, None]  # summed in this order, q3 left out


def go_typical_pods(
    pods: Iterable[tuple[PodShape, str]], threshold_pct: int = POPULARITY_THRESHOLD_PCT
) -> Typical:
    """Rule 1 over (FGD key shape, raw gpu_spec string) pairs; a kept key's shape may repeat."""
    counts: dict[tuple[int, int, int, str], tuple[PodShape, int]] = {}
    for shape, spec in pods:
        key = (shape.cpu_milli, shape.gpu_milli, shape.gpu_count, spec)
        seen = counts.get(key)
        counts[key] = (shape, 1 if seen is None else seen[1] + 1)
    ranked = sorted(counts.items(), key=lambda kv: (kv[1][1], kv[0]), reverse=True)
    total = float(sum(count for _, (_, count) in ranked))
    expected = float(threshold_pct) * total / 100.0
    kept: list[tuple[PodShape, float]] = []
    cumulative = 0.0
    for _, (shape, count) in ranked:
        if cumulative >= expected:
            break
        cumulative += count
        kept.append((shape, count / total))
    if len(kept) == len(ranked):
        return tuple(kept)
    share = cumulative / total
    return tuple((shape, freq / share) for shape, freq in kept)


class GoExactMix(TypicalMix):
    """A `TypicalMix` whose F(n) follows rule 2; everything else (memo, fits) is inherited."""

    __slots__ = ("_gpu_pod",)

    def __init__(self, typical: Typical) -> None:
        super().__init__(typical)
        self._gpu_pod = self._milli > 0

    def _compute(self, gpu_type: str, free: tuple[int, ...], cpu_left: int) -> float:
        idle = sum(free)
        fitting, small = self._device_fit(free)
        cpu_ok = self._cpu <= cpu_left
        # _types_ok is "GPU pod whose spec admits this model"; a GPU pod outside it has no access
        access = self._types_ok(gpu_type)
        hosts = fitting >= self._count
        bucket = np.where(
            ~self._gpu_pod,
            np.where(cpu_ok, XL, XR),
            np.where(~access, NA, np.where(hosts, np.where(cpu_ok, Q2, Q4), np.where(cpu_ok, Q2, Q1))),
        )
        satisfied = self._gpu_pod & access & hosts & cpu_ok  # q3: only its too-small GPUs count
        amount = np.where(satisfied, small, idle).astype(np.float64)
        terms = self._prob * amount  # one rounding each, as Go's freq * float64(amount)
        # one row per summed bucket, its terms in typical-pod order and 0.0 elsewhere (adding 0.0
        # leaves a running sum unchanged); the last running sum of each row is Go's bucket total
        rows = np.where(bucket[None, :] == _BUCKET_ROWS, terms[None, :], 0.0)
        out = 0.0
        for total in np.cumsum(rows, axis=1)[:, -1]:
            out += float(total)
        return out
