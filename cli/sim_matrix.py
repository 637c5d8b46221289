"""Run a workload x policy x seed matrix, optionally on a process pool.

One task = one (workload, policy, seed) replay. Each worker process loads a trace file once and
keeps it; the pod sequence of a (workload, seed) is rebuilt deterministically in every process,
so all policies see the same sequence (paired design) wherever they run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from accel.sim.policies import make_policy
from accel.sim.runner import RunResult, run
from accel.sim.trace import TraceNode, TracePod
from accel.sim.workload import build_run_input
from cli.sim_trace import NODE_FILE, load_nodes, load_pods, pod_file

FIRST_SEED = 42  # the published runs use seeds 42..51


@dataclass(frozen=True, slots=True)
class Task:
    trace_dir: str
    workload: str
    policy: str
    seed: int


@dataclass(frozen=True, slots=True)
class Record:
    workload: str
    result: RunResult


@functools.lru_cache(maxsize=4)
def _load(trace_dir: str, workload: str) -> tuple[list[TracePod], list[TraceNode]]:
    return load_pods(pod_file(Path(trace_dir), workload)), load_nodes(Path(trace_dir) / NODE_FILE)


def run_task(task: Task) -> Record:
    """Replay one task (top-level so a process pool can pickle it)."""
    pods, nodes = _load(task.trace_dir, task.workload)
    total_gpus = sum(len(n.shape.free_milli) for n in nodes)
    run_input = build_run_input(pods, total_gpus=total_gpus, node_count=len(nodes), seed=task.seed,
                                node_names=[n.name for n in nodes])
    policy = make_policy(task.policy, pods, (n.shape for n in nodes))
    start = time.perf_counter()  # the core never reads a clock: the runner times the replay
    result = run(nodes, run_input, policy, seed=task.seed)
    return Record(workload=task.workload, result=replace(result, seconds=time.perf_counter() - start))


def make_tasks(trace_dir: Path, workloads: Iterable[str], policies: Iterable[str], seeds: int) -> list[Task]:
    """Seeds FIRST_SEED .. FIRST_SEED + seeds - 1 for every workload and policy."""
    policy_list = list(policies)
    return [
        Task(str(trace_dir), w, p, FIRST_SEED + s)
        for w in workloads
        for s in range(seeds)
        for p in policy_list
    ]


def run_matrix(
    tasks: list[Task], *, jobs: int = 1, progress: Callable[[Record], None] | None = None
) -> list[Record]:
    """All tasks, in task order; `jobs` > 1 uses that many worker processes."""
    if jobs <= 1:
        records = []
        for task in tasks:
            records.append(run_task(task))
            if progress:
                progress(records[-1])
        return records
    out: dict[int, Record] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
        for future in as_completed(futures):
            out[futures[future]] = future.result()
            if progress:
                progress(out[futures[future]])
    return [out[i] for i in range(len(tasks))]
