"""Replay one (workload, policy, seed) and measure allocation (benchmark doc, sections 1, 2, 5).

Per arriving pod: filter nodes (CPU, memory, GPU model, per-device milli), score every feasible
node state once (cached per (state id, pod shape)), take the highest score, break ties with the
run's node priority, place. A pod that fits nowhere fails and is never retried. After every pod
the arrived and allocated GPU milli are recorded; `allocation_curve` turns them into the
column-k window averages of `analysis_allo_discrete.csv`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from accel.placement.shapes import PodShape, pod_fits
from accel.sim.cluster import ClusterState
from accel.sim.gorand import GoRand
from accel.sim.policies import Policy, RandomPolicy, best_devices
from accel.sim.trace import TraceNode
from accel.sim.workload import RunInput

ARRIVAL_COLUMNS = 131  # 0..130 % of GPU capacity
REPORT_COLUMN = 100


@dataclass(frozen=True, slots=True)
class RunResult:
    policy: str
    seed: int
    pods: int
    failed: int
    seconds: float  # wall time of the replay, measured by the caller (cli.sim_matrix); 0.0 from `run`
    allocation_curve: tuple[float, ...]  # column k = mean alloc % while arrived ~ k %

    @property
    def unallocated_gpu_pct(self) -> float:
        """100 - allocation % at arrival column 100 (the paper's "Unallocated GPU (%)")."""
        return 100.0 - self.allocation_curve[REPORT_COLUMN]


def allocation_curve(arrived: np.ndarray, used: np.ndarray, total_gpus: int) -> tuple[float, ...]:
    """Column k = mean rounded alloc % over events whose rounded arrival % == k, else k-1..k+1.

    Beyond the published analysis (which leaves such columns empty): when even k-1..k+1 has no
    event (tiny clusters, where one pod jumps several %), the column holds the allocation of the
    last event that arrived before k, so column 100 is always defined once arrivals reach it;
    columns past the last arrival are NaN.
    """
    arrive_ratio = np.round(arrived / total_gpus / 10.0)
    alloc_ratio = np.round(used / total_gpus / 10.0, 2)
    out: list[float] = []
    for k in range(ARRIVAL_COLUMNS):
        hit = alloc_ratio[arrive_ratio == k]
        if hit.size == 0:
            hit = alloc_ratio[(arrive_ratio >= k - 1) & (arrive_ratio <= k + 1)]
        if hit.size == 0:
            before = alloc_ratio[arrive_ratio < k]
            hit = before[-1:] if before.size and arrive_ratio[-1] > k else hit
        out.append(float(hit.mean()) if hit.size else float("nan"))
    return tuple(out)


def _feasible_score(cluster: ClusterState, policy: Policy, pod: PodShape, sid: int, feas: dict[int, bool],
                    scores: dict[int, tuple[float, tuple[int, ...]]]) -> float | None:
    """The policy's score of node group `sid` for `pod`, None when it cannot host it (both memoised
    per pod shape and group state: that memo is what makes a run take seconds, not hours)."""
    ok = feas.get(sid)
    if ok is None:
        ok = feas[sid] = pod_fits(cluster.state_by_sid[sid].shape, pod)
    if not ok:
        return None
    entry = scores.get(sid)
    if entry is None:
        entry = scores[sid] = policy.score(cluster.state_by_sid[sid], pod)
    return entry[0]


def _pick(cluster: ClusterState, policy: Policy, pod: PodShape, feas: dict[int, bool],
          scores: dict[int, tuple[float, tuple[int, ...]]]) -> tuple[int, tuple[int, ...]] | None:
    """Best feasible node and its devices, or None; ties go to the smaller priority rank."""
    candidates: list[tuple[int, float]] = []
    for sid in cluster.groups:
        score = _feasible_score(cluster, policy, pod, sid, feas, scores)
        if score is not None:
            candidates.append((sid, score))
    if not candidates:
        return None
    if policy.normalise:
        lo = min(s for _, s in candidates)
        span = max(s for _, s in candidates) - lo
        candidates = [(sid, (s - lo) * 100 // span if span > 0 else 0.0) for sid, s in candidates]
    top = max(s for _, s in candidates)
    _rank, node = min(cluster.groups[sid].best() for sid, s in candidates if s == top)
    return node, scores[cluster.node_sid[node]][1]


@dataclass(slots=True)
class _Candidates:
    """One pod shape's feasible sids by score, valid for policy `version` up to `seen` events."""

    version: int = -1
    seen: int = 0
    score_of: dict[int, float] = field(default_factory=dict)
    by_score: dict[float, set[int]] = field(default_factory=dict)

    def reset(self) -> None:
        self.score_of.clear()
        self.by_score.clear()

    def add(self, sid: int, score: float) -> None:
        self.score_of[sid] = score
        self.by_score.setdefault(score, set()).add(sid)

    def remove(self, sid: int) -> None:
        score = self.score_of.pop(sid)
        tied = self.by_score[score]
        tied.discard(sid)
        if not tied:
            del self.by_score[score]


def _pick_incremental(cluster: ClusterState, policy: Policy, pod: PodShape, feas: dict[int, bool],
                      scores: dict[int, tuple[float, tuple[int, ...]]],
                      cand: _Candidates) -> tuple[int, tuple[int, ...]] | None:
    """Same choice as `_pick` for policies without normalisation, in O(changed groups) per pod.

    The candidate set of this pod shape is replayed from `cluster.events` since its last use (or
    rebuilt when the policy version changed or more groups changed than exist).
    """
    if cand.version != policy.version or len(cluster.events) - cand.seen > len(cluster.groups):
        cand.reset()
        changed: Iterable[int] = cluster.groups
    else:
        changed = set(cluster.events[cand.seen:])
    cand.version, cand.seen = policy.version, len(cluster.events)
    for sid in changed:
        if sid in cand.score_of:
            cand.remove(sid)
        if sid not in cluster.groups:
            continue
        score = _feasible_score(cluster, policy, pod, sid, feas, scores)
        if score is not None:
            cand.add(sid, score)
    if not cand.by_score:
        return None
    _rank, node = min(cluster.groups[sid].best() for sid in cand.by_score[max(cand.by_score)])
    return node, scores[cluster.node_sid[node]][1]


def _pick_random(cluster: ClusterState, pod: PodShape, feas: dict[int, bool],
                 rng: GoRand) -> tuple[int, tuple[int, ...]] | None:
    """RandomScore + gpuSel `random`, drawing from the simulator's global source as it does.

    PreScore draws Intn(#feasible) only when there is more than one feasible node (kube-scheduler
    skips scoring for a single one); a shared pod then reservoir-samples its GPU with one Intn per
    fitting device. Go's feasible list comes from a parallel filter and its order varies from run
    to run, so no replay (not even Go's own) reproduces Random per seed; here it is the order of
    the state groups, which is as uniform.
    """
    states = cluster.state_by_sid
    fits = []
    for sid, group in cluster.groups.items():
        ok = feas.get(sid)
        if ok is None:
            ok = feas[sid] = pod_fits(states[sid].shape, pod)
        if ok:
            fits.append(group)
    total = sum(len(g.members) for g in fits)
    if total == 0:
        return None
    r = rng.intn(total) if total > 1 else 0
    for group in fits:
        if r < len(group.members):
            node = sorted(group.members)[r]
            break
        r -= len(group.members)
    shape = cluster.states[node].shape
    if pod.is_shared:
        chosen, count = -1, 0
        for i, free in enumerate(shape.free_milli):
            if free >= pod.gpu_milli:
                count += 1
                if rng.intn(count) == 0:
                    chosen = i
        return node, (chosen,)
    return node, best_devices(shape, pod)


def run(nodes: list[TraceNode], run_input: RunInput, policy: Policy, *, seed: int) -> RunResult:
    """Replay `run_input` under `policy`; deterministic for a given seed."""
    cluster = ClusterState([n.shape for n in nodes], run_input.node_priority)
    rng = run_input.placement_source()
    pid_of: dict[PodShape, int] = {}
    feas: list[dict[int, bool]] = []
    cands: list[_Candidates] = []
    scores: list[dict[int, tuple[float, tuple[int, ...]]]] = []
    version = policy.version
    arrived_acc, used_acc, failed = 0, 0, 0
    arrived = np.empty(len(run_input.arrivals), dtype=np.int64)
    used = np.empty(len(run_input.arrivals), dtype=np.int64)
    for step, idx in enumerate(run_input.arrivals):
        pod = run_input.pods[idx].shape
        pid = pid_of.setdefault(pod, len(pid_of))
        if pid == len(feas):
            feas.append({})
            scores.append({})
            cands.append(_Candidates())
        policy.observe(pod)
        if policy.version != version:
            version = policy.version
            scores = [{} for _ in scores]
        arrived_acc += pod.total_gpu_milli
        if isinstance(policy, RandomPolicy):
            choice = _pick_random(cluster, pod, feas[pid], rng)
        elif policy.normalise:
            choice = _pick(cluster, policy, pod, feas[pid], scores[pid])
        else:
            choice = _pick_incremental(cluster, policy, pod, feas[pid], scores[pid], cands[pid])
        if choice is None:
            failed += 1
        else:
            cluster.place(choice[0], pod, choice[1])
        used_acc = cluster.used_gpu_milli
        arrived[step] = arrived_acc
        used[step] = used_acc
    total_gpus = cluster.capacity_milli // 1000
    curve = allocation_curve(arrived, used, total_gpus)
    return RunResult(policy=policy.name, seed=seed, pods=len(run_input.arrivals), failed=failed,
                     seconds=0.0, allocation_curve=curve)
