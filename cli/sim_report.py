"""Published FGD-simulator numbers, and table / JSON / PNG renderings of simulation records."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accel.sim.runner import ARRIVAL_COLUMNS
from accel.sim.trace import TraceError
from cli.plotting import pyplot
from cli.sim_matrix import Record
from cli.sim_trace import POD_FILE_PREFIX

#: Row keys of `derived_unalloc_gpu_pct_at_arrival100.csv` -> our policy names.
PUBLISHED_POLICY = {
    "01-Random": "random",
    "02-DotProd": "dotprod",
    "03-GpuClustering": "clustering",
    "04-GpuPacking": "packing",
    "05-BestFit": "bestfit",
    "06-FGD": "fgd",
}
PUBLISHED_FILE = "derived_unalloc_gpu_pct_at_arrival100.csv"
#: Per-run allocation curves behind those means, relative to the same folder.
PUBLISHED_CURVES_FILE = "fgd-simulator-expected-results/analysis_allo_discrete.csv"

Published = dict[tuple[str, str], tuple[float, float]]


def read_published(path: Path) -> Published:
    """(workload stem, policy) -> (mean, sd) of unallocated GPU % at arrival 100."""
    if not path.is_file():
        raise TraceError(f"{path}: published results not found")
    out: Published = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            policy = PUBLISHED_POLICY.get(row["policy"])
            if policy:
                workload = row["workload"].removeprefix(POD_FILE_PREFIX)
                out[workload, policy] = (float(row["unalloc_gpu_pct_mean"]), float(row["unalloc_gpu_pct_sd"]))
    return out


def read_published_curves(path: Path) -> dict[tuple[str, str, int], tuple[float, ...]]:
    """(workload stem, policy, seed) -> the published run's allocation curve, columns 0..130."""
    if not path.is_file():
        raise TraceError(f"{path}: published per-run curves not found")
    out: dict[tuple[str, str, int], tuple[float, ...]] = {}
    with path.open(newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            policy = PUBLISHED_POLICY.get(row.get("sc_policy", ""))
            if not policy:
                continue
            try:
                curve = tuple(float(row[str(k)]) for k in range(ARRIVAL_COLUMNS))
                seed = int(row["seed"])
            except (KeyError, TypeError, ValueError) as e:
                raise TraceError(f"{path}:{line}: bad or missing seed/column value ({e})") from None
            out[row["workload"].removeprefix(POD_FILE_PREFIX), policy, seed] = curve
    return out


def curves_by_run(records: Sequence[Record]) -> dict[tuple[str, str, int], tuple[float, ...]]:
    return {(r.workload, r.result.policy, r.result.seed): r.result.allocation_curve for r in records}


def summarise(records: Sequence[Record]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(workload, policy) -> (mean, sample sd, n) of unallocated GPU % over seeds."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        grouped.setdefault((rec.workload, rec.result.policy), []).append(rec.result.unallocated_gpu_pct)
    return {
        key: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
        for key, v in grouped.items()
    }


def pods_per_second(records: Sequence[Record]) -> dict[str, float]:
    """Scheduling throughput per policy over all its runs."""
    pods: dict[str, int] = {}
    secs: dict[str, float] = {}
    for rec in records:
        pods[rec.result.policy] = pods.get(rec.result.policy, 0) + rec.result.pods
        secs[rec.result.policy] = secs.get(rec.result.policy, 0.0) + rec.result.seconds
    return {p: pods[p] / secs[p] if secs[p] > 0 else math.inf for p in pods}


def render_table(records: Sequence[Record], published: Published) -> str:
    """Plain-text table: mean +- sd per workload x policy, published mean beside it."""
    summary = summarise(records)
    lines = [
        f"{'workload':<12} {'policy':<11} {'unalloc% (ours)':>17} {'published':>10} {'diff pp':>8} {'n':>3}"
    ]
    for (workload, policy), (mean, sd, n) in summary.items():
        pub = published.get((workload, policy))
        pub_s = f"{pub[0]:10.2f}" if pub else f"{'-':>10}"
        diff_s = f"{mean - pub[0]:+8.2f}" if pub else f"{'-':>8}"
        lines.append(f"{workload:<12} {policy:<11} {mean:8.2f} +- {sd:5.2f} {pub_s} {diff_s} {n:3d}")
    rates = pods_per_second(records)
    lines.append("pods/s: " + ", ".join(f"{p} {r:,.0f}" for p, r in rates.items()))
    return "\n".join(lines)


def to_json_records(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One JSON object per (workload, policy, seed)."""
    return [
        {
            "workload": rec.workload,
            "policy": rec.result.policy,
            "seed": rec.result.seed,
            "unallocated_gpu_pct": rec.result.unallocated_gpu_pct,
            "allocation_ratio": [None if math.isnan(v) else v for v in rec.result.allocation_curve],
            "pods": rec.result.pods,
            "failed": rec.result.failed,
            "seconds": rec.result.seconds,
        }
        for rec in records
    ]


def plot(records: Sequence[Record], path: Path) -> None:
    """Allocation % vs arrived % per policy (seed mean), one panel per workload, like the paper."""
    plt = pyplot()
    workloads = list(dict.fromkeys(r.workload for r in records))
    cols = min(len(workloads), 3)
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, workload in zip(axes.flat, workloads, strict=False):
        curves: dict[str, list[tuple[float, ...]]] = {}
        for rec in records:
            if rec.workload == workload:
                curves.setdefault(rec.result.policy, []).append(rec.result.allocation_curve)
        for policy, runs in curves.items():
            mean = [statistics.fmean(vals) for vals in zip(*runs, strict=True)]
            ax.plot(range(len(mean)), mean, label=policy)
        ax.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlim(0, 130)
        ax.set_title(workload)
        ax.set_xlabel("arrived GPU demand (% of capacity)")
        ax.set_ylabel("GPU allocated (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(workloads):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
