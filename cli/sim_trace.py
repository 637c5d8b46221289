"""Reading the Alibaba cluster-trace-gpu-v2023 ("openb") CSVs into plain records.

Pod files: `name,cpu_milli,memory_mib,num_gpu[,gpu_milli,gpu_spec,...]` (multigpu* files have no
gpu_spec: any model; a missing gpu_milli column would mean whole GPUs). Node file:
`sn,cpu_milli,memory_mib,gpu,model`.
Conversion follows the FGD simulator's `pod_csv_to_yaml.py`: a GPU pod's milli is clamped to
(0, 1000]; a CPU-only pod has milli 0 and count 0. The trace is never copied into this repo.
"""

from __future__ import annotations

import csv
from pathlib import Path

from accel.placement.shapes import MILLI, NodeShape, PodShape
from accel.sim.trace import TraceError, TraceNode, TracePod

POD_FILE_PREFIX = "openb_pod_list_"
NODE_FILE = "openb_node_list_gpu_node.csv"
_POD_REQUIRED = ("name", "cpu_milli", "memory_mib", "num_gpu")
_NODE_REQUIRED = ("sn", "cpu_milli", "memory_mib", "gpu", "model")


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise TraceError(f"{path}: file not found; pass --trace-dir pointing at the openb CSV folder")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(f"{path}: missing column(s) {missing}; expected at least {list(required)}")
        return list(reader)


def _int(path: Path, line: int, row: dict[str, str], column: str, default: int | None = None) -> int:
    raw = (row.get(column) or "").strip()
    if raw == "" and default is not None:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise TraceError(f"{path}:{line}: column {column!r} is {raw!r}, expected an integer") from None


def load_pods(path: Path) -> list[TracePod]:
    """All pods of one pod-list CSV, in file order."""
    pods: list[TracePod] = []
    for line, row in enumerate(_rows(path, _POD_REQUIRED), start=2):
        count = _int(path, line, row, "num_gpu")
        milli = min(max(_int(path, line, row, "gpu_milli", MILLI), 1), MILLI) if count > 0 else 0
        spec = (row.get("gpu_spec") or "").strip() if count > 0 else ""
        shape = PodShape(
            cpu_milli=_int(path, line, row, "cpu_milli"),
            gpu_milli=milli,
            gpu_count=count,
            gpu_types=frozenset(t for t in spec.split("|") if t),
            memory_mib=_int(path, line, row, "memory_mib"),
        )
        pods.append(TracePod(name=row["name"], shape=shape, gpu_spec=spec))
    if not pods:
        raise TraceError(f"{path}: no pod rows")
    return pods


def load_nodes(path: Path) -> list[TraceNode]:
    """The GPU nodes, fully free, in file order."""
    nodes: list[TraceNode] = []
    for line, row in enumerate(_rows(path, _NODE_REQUIRED), start=2):
        gpus = _int(path, line, row, "gpu")
        shape = NodeShape(
            gpu_type=(row.get("model") or "").strip(),
            free_milli=(MILLI,) * gpus,
            cpu_left_milli=_int(path, line, row, "cpu_milli"),
            memory_left_mib=_int(path, line, row, "memory_mib"),
        )
        nodes.append(TraceNode(name=row["sn"], shape=shape))
    if not nodes:
        raise TraceError(f"{path}: no node rows")
    return nodes


def pod_file(trace_dir: Path, workload: str) -> Path:
    """`default` -> DIR/openb_pod_list_default.csv."""
    return trace_dir / f"{POD_FILE_PREFIX}{workload}.csv"


def available_workloads(trace_dir: Path) -> list[str]:
    return sorted(p.stem[len(POD_FILE_PREFIX) :] for p in trace_dir.glob(f"{POD_FILE_PREFIX}*.csv"))
