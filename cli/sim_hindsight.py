"""The hindsight reference in `accel simulate` (issue 20 §3): pseudo-policy `hindsight`.

One `hindsight` task packs the pods that arrived by the end of arrival column 100 for a
(workload, seed), the same sequence the online policies see, and yields six records:
`hindsight-ffd`, `hindsight-bfd`, `hindsight-pattern`, `hindsight-arrival`, `hindsight-ls` (local
search from the last three, within a step budget and a CPU-time budget) and `bound` (an upper bound on the
allocation of any packing, so a lower bound on unallocated GPU %). The algorithms are in
`accel.sim.hindsight` and `accel.sim.hindsight_bound`; this module only adds the clock and the
table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from accel.sim.hindsight import arrival_prefix, pack_in_hindsight
from accel.sim.hindsight_bound import gpu_upper_bound
from accel.sim.runner import RunResult, allocation_curve
from accel.sim.trace import TraceNode
from accel.sim.workload import RunInput

HINDSIGHT = "hindsight"
HINDSIGHT_NAMES = ("hindsight-ffd", "hindsight-bfd", "hindsight-pattern", "hindsight-arrival", "hindsight-ls",
                   "bound")
DEFAULT_STEPS = 50_000  # local-search steps; `default` converges in ~2,500 (about 2 s)
DEFAULT_SECONDS = 20.0  # CPU-time cap on the local search (process time, so a busy machine does not cut it)
BOUND_ITERATIONS = 60


def run_hindsight(nodes: list[TraceNode], run_input: RunInput, *, seed: int, steps: int = DEFAULT_STEPS,
                  seconds: float = DEFAULT_SECONDS) -> list[RunResult]:
    """The six hindsight results for one (workload, seed); `seconds` bounds the local search."""
    shapes = [n.shape for n in nodes]
    total_gpus = sum(len(s.free_milli) for s in shapes)
    sequence = [run_input.pods[i].shape for i in run_input.arrivals]
    prefix = sequence[: arrival_prefix(sequence, total_gpus)]
    start = time.perf_counter()
    deadline = time.process_time() + seconds
    packed = pack_in_hindsight(shapes, prefix, run_input.node_priority, total_gpus, steps=steps,
                               stop=lambda: time.process_time() > deadline)
    pack_seconds = time.perf_counter() - start
    out = [RunResult(policy=r.name, seed=seed, pods=len(prefix),
                     failed=r.rejected_gpu_pods + r.rejected_cpu_pods, seconds=pack_seconds,
                     allocation_curve=r.allocation_curve) for r in packed]
    gpu = np.fromiter((p.total_gpu_milli for p in prefix), dtype=np.int64, count=len(prefix))
    best = max(packed, key=lambda r: r.allocation_curve[100])
    placed = float(gpu[np.array([n != -1 for n in best.node_of], dtype=bool)].sum())
    start = time.perf_counter()
    bound = gpu_upper_bound(shapes, prefix, target_milli=placed, iterations=BOUND_ITERATIONS)
    curve = allocation_curve(np.cumsum(gpu), bound.per_event, total_gpus)
    out.append(RunResult(policy="bound", seed=seed, pods=len(prefix), failed=0,
                         seconds=time.perf_counter() - start, allocation_curve=curve))
    return out


def render_gap_table(summary: dict[tuple[str, str], tuple[float, float, int]], workloads: Sequence[str],
                     online: Sequence[str] = ("accel", "fgd")) -> str:
    """Markdown: per workload, the online policies beside the hindsight references and the bound,
    and accel's gap (in pp and as a ratio) to the local search and to the bound."""
    cols = [*online, *HINDSIGHT_NAMES]
    lines = ["| workload | " + " | ".join(cols)
             + " | accel - bound (pp) | accel / ls | fgd - bound (pp) | seeds |",
             "|---" * (len(cols) + 5) + "|"]
    for w in workloads:
        cells = []
        for c in cols:
            mean = summary.get((w, c))
            cells.append(f"{mean[0]:.2f}" if mean else "-")
        acc, fgd = summary.get((w, "accel")), summary.get((w, "fgd"))
        bound, ls = summary.get((w, "bound")), summary.get((w, "hindsight-ls"))
        gap = f"{acc[0] - bound[0]:+.2f}" if acc and bound else "-"
        ratio = f"{acc[0] / ls[0]:.2f}" if acc and ls and ls[0] > 0 else "-"
        fgap = f"{fgd[0] - bound[0]:+.2f}" if fgd and bound else "-"
        seeds = bound[2] if bound else 0
        lines.append(f"| {w} | " + " | ".join(cells) + f" | {gap} | {ratio} | {fgap} | {seeds} |")
    return "\n".join(lines)


def hindsight_ratios(summary: dict[tuple[str, str], tuple[float, float, int]], workload: str) -> list[str]:
    """One line per online policy: its unallocated % as a ratio to the hindsight local search and
    the gap to the lower bound (for `make bench`)."""
    out: list[str] = []
    ls, bound = summary.get((workload, "hindsight-ls")), summary.get((workload, "bound"))
    if not ls or not bound:
        return out
    for policy in ("accel", "fgd"):
        mean = summary.get((workload, policy))
        if mean:
            out.append(f"{policy}/hindsight-ls unallocated ratio {workload}: {mean[0] / ls[0]:.3f} "
                       f"({mean[0]:.2f} vs {ls[0]:.2f}); {policy} - bound: {mean[0] - bound[0]:+.2f} pp "
                       f"(bound {bound[0]:.2f}, share of {policy}'s waste above the bound "
                       f"{(mean[0] - bound[0]) / mean[0]:.0%})")
    return out
