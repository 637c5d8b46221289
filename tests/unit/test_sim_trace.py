"""Trace loading, plus `write_synthetic_trace`: a small openb-format trace for simulator tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from accel.sim.trace import TraceError
from cli.sim_trace import NODE_FILE, load_nodes, load_pods, pod_file

POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)


def write_synthetic_trace(
    directory: Path, *, workload: str = "default", pods: int = 300, seed: int = 1, demand: float = 0.9
) -> Path:
    """Write a node list (35 nodes, 140 GPUs, 3 models) and a pod list in openb format; return the folder.

    Pods mix CPU-only, shared (fractional), whole and multi-GPU requests, some with a gpu_spec,
    scaled so their total GPU demand is about `demand` x capacity before tuning.
    """
    directory.mkdir(parents=True, exist_ok=True)
    nodes = [("A", 8, 96000, 786432)] * 10 + [("B", 2, 64000, 262144)] * 20 + [("C", 4, 32000, 131072)] * 5
    lines = ["sn,cpu_milli,memory_mib,gpu,model"]
    lines += [f"node-{i:03d},{cpu},{mem},{gpus},{model}" for i, (model, gpus, cpu, mem) in enumerate(nodes)]
    (directory / NODE_FILE).write_text("\n".join(lines) + "\n")
    capacity = sum(n[1] for n in nodes) * 1000
    rng = random.Random(seed)
    rows, total = [POD_HEADER], 0
    for i in range(pods):
        kind = rng.choices(["cpu", "share", "whole", "multi"], weights=[2, 5, 3, 1])[0]
        num, milli = {"cpu": (0, 0), "share": (1, rng.choice([250, 500, 300])), "whole": (1, 1000),
                      "multi": (rng.choice([2, 4]), 1000)}[kind]
        if total + num * milli > demand * capacity:
            num, milli = 0, 0
        total += num * milli
        spec = rng.choice(["", "", "", "A", "B|C"]) if num else ""
        cpu = rng.choice([1000, 2000, 4000, 8000])
        rows.append(f"pod-{i:04d},{cpu},{cpu * 2},{num},{milli},{spec},LS,Running,0,,")
    pod_file(directory, workload).write_text("\n".join(rows) + "\n")
    return directory


def test_synthetic_trace_loads_with_expected_shapes(tmp_path: Path) -> None:
    trace = write_synthetic_trace(tmp_path)
    pods = load_pods(pod_file(trace, "default"))
    nodes = load_nodes(trace / NODE_FILE)
    assert len(pods) == 300 and len(nodes) == 35
    assert {n.shape.gpu_type for n in nodes} == {"A", "B", "C"}
    assert all(n.shape.free_milli == (1000,) * len(n.shape.free_milli) for n in nodes)
    assert any(p.shape.gpu_types == frozenset({"B", "C"}) for p in pods)
    assert all((p.shape.gpu_count == 0) == (p.shape.gpu_milli == 0) for p in pods)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param("p,1000,10,1,1500,,", (1000, 1), id="milli-clamped-to-1000"),
        pytest.param("p,1000,10,1,0,,", (1, 1), id="zero-milli-gpu-pod-clamped-to-1"),
        pytest.param("p,1000,10,0,500,,", (0, 0), id="cpu-only-pod-has-no-milli"),
    ],
)
def test_gpu_milli_is_clamped_like_the_fgd_converter(
    tmp_path: Path, row: str, expected: tuple[int, int]
) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n" + row + "\n")
    shape = load_pods(path)[0].shape
    assert (shape.gpu_milli, shape.gpu_count) == expected


def test_multigpu_files_without_milli_column_mean_whole_gpus(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu\np,4000,10,8\n")
    shape = load_pods(path)[0].shape
    assert (shape.gpu_milli, shape.gpu_count, shape.gpu_types) == (1000, 8, frozenset())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(
            "name,cpu_milli,num_gpu\np,1,0\n", "missing column(s) ['memory_mib']", id="missing-column"
        ),
        pytest.param(
            "name,cpu_milli,memory_mib,num_gpu\np,x,1,0\n", ":2: column 'cpu_milli' is 'x'", id="bad-int"
        ),
        pytest.param("name,cpu_milli,memory_mib,num_gpu\n", "no pod rows", id="empty"),
    ],
)
def test_malformed_pod_file_names_file_line_and_column(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=None) as info:
        load_pods(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="--trace-dir"):
        load_nodes(tmp_path / NODE_FILE)
