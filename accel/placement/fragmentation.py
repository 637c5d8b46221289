"""GPU fragmentation scores shared by the scheduler extender and the trace simulator.

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
   Device fill: what a placement leaves on partly used devices is scored by whether the sizes the
   mix keeps asking for can close it (`TypicalMix.fill_residue`), not only by whether the next pod
   fits: 470 + 470 (60 left) beats a 320 in a 470's 530 (210 left, which only rare pods close).
   Lock-in: a shared pod that would leave a partly used device with more residue than it would leave
   on a fresh device pays for the difference (`TypicalMix.fill_lock_in`): a 320 in a 550's 450
   (130 left) loses to a fresh device (680, closed to 30 by a 650), which the fill term alone,
   counting the 450 as already lost to its best closure, does not see.

Shapes live in `accel.placement.shapes`, the learned workload mix in
`accel.placement.workload_mix`.
"""

from __future__ import annotations

import math

from accel.placement.shapes import (
    MILLI,
    ClusterContext,
    NodeShape,
    PodShape,
    Typical,
)
from accel.placement.workload_mix import TypicalMix, WorkloadHistogram

#: Score steps of the accel scorer (FGD uses 100); see `fragmentation_score`.
ACCEL_SCORE_LEVELS = 50
#: Weight of the CPU-stranding term against FGD's fragmentation delta (both in milli-GPU).
ACCEL_STRAND_WEIGHT = 1.0
#: Weight of the GPU-model scarcity penalty (milli-GPU per placed GPU milli at full pressure).
ACCEL_SCARCITY_WEIGHT = 0.3
#: Weight of the device-fill term (milli-GPU of residue that common sizes cannot close; see
#: `TypicalMix.fill_residue`). 8 on openb `default`, seeds 42..46: 3 -> 3.96 %, 5 -> 3.93 %,
#: 8 -> 3.86 %, 12 -> 3.88 % (docs/simulation-results.md).
ACCEL_FILL_WEIGHT = 8.0
#: Weight of the lock-in penalty for shared pods (see `TypicalMix.fill_lock_in`): milli-GPU per milli a
#: pod locks in on a partly used device beyond what it would leave on a fresh one. openb `default`,
#: 10 seeds 42..51 (with spoken-for sizes left out of `TypicalMix.fill_sizes`): 0 -> 3.89 %,
#: 12 -> 3.795 %, 14 -> 3.805 %, 16 -> 3.794 %: flat within seed noise (docs/simulation-results.md).
ACCEL_LOCK_WEIGHT = 12.0
#: A shared-GPU size is "common" for the fill term from this share of the mix's shared pods.
ACCEL_FILL_MIN_SHARE = 0.03


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


def stranded_gpu_milli(idle_milli: int, cpu_left_milli: int, cpu_per_gpu_milli: float,
                       memory_left_mib: int = 0, memory_per_gpu_milli: float | None = None) -> float:
    """Idle GPU milli that the node's CPU (and memory) left cannot feed at the mix's ratios.

    Why: on the openb trace CPU is ~80 % subscribed and GPU pods ask ~11 cores per GPU, so nodes
    such as 96-core/8-GPU ones run out of CPU with GPUs idle. FGD only sees this once CPU left
    drops below a typical pod's request; this term sees it as soon as the balance tips. Memory
    likewise: GPU pods ask ~41 GiB per GPU and the 549 G2 nodes have 48 GiB per GPU, so a node can
    run out of memory with whole GPUs idle. With `memory_per_gpu_milli` (None: not known, as in the
    extender) the GPUs the node can feed are the fewer of what its CPU and its memory can feed.
    """
    feedable = cpu_left_milli / cpu_per_gpu_milli
    if memory_per_gpu_milli:
        feedable = min(feedable, memory_left_mib / memory_per_gpu_milli)
    return max(0.0, idle_milli - feedable)


def _sigmoid_score(delta: float) -> int:
    """Rule 3: int(sigmoid(delta / 1000) * 100), with Go's truncation toward zero and its order of
    operations (1 / (1 + e^-x), then x 100): near delta = 0 rounding decides 49 or 50."""
    return int(1.0 / (1.0 + math.exp(-(delta / MILLI))) * 100.0)


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


def _fill_gain(node: NodeShape, free_after: tuple[int, ...], cpu_after: int, mix: TypicalMix) -> float:
    """How much unclosable residue the placement removes (negative: how much it creates)."""
    before = mix.fill_residue(node.free_milli, node.cpu_left_milli, ACCEL_FILL_MIN_SHARE)
    return float(before - mix.fill_residue(free_after, cpu_after, ACCEL_FILL_MIN_SHARE))


def _accel_adjust(node: NodeShape, pod: PodShape, mix: TypicalMix, strand_weight: float,
                  context: ClusterContext | None, scarcity_weight: float, fill_weight: float) -> float:
    """accel's node-level terms added to FGD's delta, in milli-GPU (higher = better placement).

    The fill term of a shared pod depends on its device, so `fragmentation_score` adds it per device.
    """
    adjust = 0.0
    if fill_weight and not pod.is_shared:
        cpu_after = node.cpu_left_milli - pod.cpu_milli
        adjust += fill_weight * _fill_gain(node, _fill_least_idle(node.free_milli, pod), cpu_after, mix)
    ratio, memory_ratio = mix.cpu_per_gpu_milli, mix.memory_per_gpu_milli
    if strand_weight and ratio:
        idle = sum(node.free_milli)
        before = stranded_gpu_milli(idle, node.cpu_left_milli, ratio, node.memory_left_mib, memory_ratio)
        after = stranded_gpu_milli(idle - pod.total_gpu_milli, node.cpu_left_milli - pod.cpu_milli, ratio,
                                   node.memory_left_mib - pod.memory_mib, memory_ratio)
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
    fill_weight: float = ACCEL_FILL_WEIGHT,
    lock_weight: float = ACCEL_LOCK_WEIGHT,
) -> tuple[float, tuple[int, ...]]:
    """accel's fragmentation score (higher = better) and the devices to use.

    delta = FGD's fragmentation decrease F(n) - F(n') under the *learned* mix (rule 4)
      + `strand_weight` x the decrease of `stranded_gpu_milli` (at the mix's CPU-per-GPU ratio)
      - `scarcity_weight` x the pod's GPU milli x the node model's `type_pressure` (only with a
        `context`: keeps models that constrained pods need free for them)
      + `fill_weight` x the decrease of `TypicalMix.fill_residue` (idle milli on partly used
        devices that the mix's common sizes cannot close, given the node's CPU left), per device
        for a shared pod,
      - `lock_weight` x `TypicalMix.fill_lock_in` for a shared pod on a partly used device (the
        residue it locks in there beyond what it would leave on a fresh device),
    pushed through FGD's sigmoid and truncated to `levels` steps instead of 100. Coarser steps
    make near-equal nodes tie, and ties go to the caller's fixed node order, which packs pods onto
    the same nodes. On openb (10 seeds, online mix) default went 4.72 % -> 4.17 % unallocated with
    the stranding term, to 3.89 % with the fill term, to 3.80 % with the lock-in term and to 3.76 % with
    memory in the stranding term (FGD 4.77 %); see docs/simulation-results.md for all 17 workloads.
    """
    mix = as_mix(workload)
    adjust = _accel_adjust(node, pod, mix, strand_weight, context, scarcity_weight, fill_weight)
    cpu_after = node.cpu_left_milli - pod.cpu_milli
    # the node's residue before placing is the same for every candidate device: look it up once
    fill_before = (mix.fill_residue(node.free_milli, node.cpu_left_milli, ACCEL_FILL_MIN_SHARE)
                   if fill_weight and pod.is_shared else 0)
    best: tuple[float, tuple[int, ...]] = (-1.0, ())
    for delta, devices in _fgd_deltas(node, pod, mix):
        if pod.is_shared:
            i, free = devices[0], node.free_milli
            if fill_weight:
                after = (*free[:i], free[i] - pod.gpu_milli, *free[i + 1 :])
                fill_after = mix.fill_residue(after, cpu_after, ACCEL_FILL_MIN_SHARE)
                delta += fill_weight * (fill_before - fill_after)
            if lock_weight:
                lock_in = mix.fill_lock_in(free[i], pod.gpu_milli, cpu_after, ACCEL_FILL_MIN_SHARE)
                delta -= lock_weight * lock_in
        score = float(int(levels / (1.0 + math.exp(-(delta + adjust) / MILLI))))
        if score > best[0]:
            best = (score, devices)
    return best if best[0] >= 0 else (0.0, ())
