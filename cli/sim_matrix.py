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
from accel.sim.workload import RunInput, build_run_input
from cli.sim_hindsight import DEFAULT_SECONDS, DEFAULT_STEPS, HINDSIGHT, run_hindsight
from cli.sim_trace import NODE_FILE, load_nodes, load_pods, pod_file

FIRST_SEED = 42  # the published runs use seeds 42..51


@dataclass(frozen=True, slots=True)
class Task:
    trace_dir: str
    workload: str
    policy: str  # a policy name, or "hindsight" for the offline references (cli.sim_hindsight)
    seed: int
    hindsight_steps: int = DEFAULT_STEPS
    hindsight_seconds: float = DEFAULT_SECONDS


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
    run_input = _run_input(pods, nodes, task.seed)
    policy = make_policy(task.policy, pods, (n.shape for n in nodes))
    start = time.perf_counter()  # the core never reads a clock: the runner times the replay
    result = run(nodes, run_input, policy, seed=task.seed)
    return Record(workload=task.workload, result=replace(result, seconds=time.perf_counter() - start))


def _run_input(pods: list[TracePod], nodes: list[TraceNode], seed: int) -> RunInput:
    total_gpus = sum(len(n.shape.free_milli) for n in nodes)
    return build_run_input(pods, total_gpus=total_gpus, node_count=len(nodes), seed=seed,
                           node_names=[n.name for n in nodes])


def run_records(task: Task) -> list[Record]:
    """One task's records: one for a policy, six for `hindsight` (top-level for the pool)."""
    if task.policy != HINDSIGHT:
        return [run_task(task)]
    pods, nodes = _load(task.trace_dir, task.workload)
    results = run_hindsight(nodes, _run_input(pods, nodes, task.seed), seed=task.seed,
                            steps=task.hindsight_steps, seconds=task.hindsight_seconds)
    return [Record(workload=task.workload, result=r) for r in results]


def make_tasks(trace_dir: Path, workloads: Iterable[str], policies: Iterable[str], seeds: int, *,
               hindsight_steps: int = DEFAULT_STEPS,
               hindsight_seconds: float = DEFAULT_SECONDS) -> list[Task]:
    """Seeds FIRST_SEED .. FIRST_SEED + seeds - 1 for every workload and policy."""
    policy_list = list(policies)
    return [
        Task(str(trace_dir), w, p, FIRST_SEED + s, hindsight_steps, hindsight_seconds)
        for w in workloads
        for s in range(seeds)
        for p in policy_list
    ]


def run_matrix(
    tasks: list[Task], *, jobs: int = 1, progress: Callable[[Record], None] | None = None
) -> list[Record]:
    """All tasks' records, in task order; `jobs` > 1 uses that many worker processes."""
    if jobs <= 1:
        records = []
        for task in tasks:
            for record in run_records(task):
                records.append(record)
                if progress:
                    progress(record)
        return records
    out: dict[int, list[Record]] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_records, t): i for i, t in enumerate(tasks)}
        for future in as_completed(futures):
            out[futures[future]] = future.result()
            if progress:
                for record in out[futures[future]]:
                    progress(record)
    return [r for i in range(len(tasks)) for r in out[i]]
