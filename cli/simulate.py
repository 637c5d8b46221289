"""`accel simulate`: replay the Alibaba openb GPU trace under scheduling policies.

Protocol of the FGD paper (docs/fragmentation-benchmark.md): tune=1.3, seeds 42.., shuffled
arrivals, fixed per-run node priority for ties. Prints unallocated GPU % at 100 % arrived per
workload x policy (mean +- sd over seeds) beside the published FGD-simulator means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accel.sim.policies import POLICY_NAMES
from accel.sim.trace import TraceError
from cli.plotting import PLOT_HINT, plotting_available
from cli.sim_hindsight import (
    DEFAULT_SECONDS,
    DEFAULT_STEPS,
    HINDSIGHT,
    HINDSIGHT_NAMES,
    render_gap_table,
)
from cli.sim_matrix import Record, make_tasks, run_matrix
from cli.sim_report import (
    PUBLISHED_CURVES_FILE,
    PUBLISHED_FILE,
    curves_by_run,
    plot,
    read_published,
    read_published_curves,
    render_table,
    summarise,
    to_json_records,
)
from cli.sim_trace import NODE_FILE, available_workloads, pod_file
from cli.sim_validation import per_seed_verdict

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE_DIR = REPO_ROOT.parent / "shared" / "data" / "alibaba-gpu-v2023" / "csv"
HOW_TO_GET_TRACE = (
    "trace not found: pass --trace-dir DIR with openb_node_list_gpu_node.csv and "
    "openb_pod_list_<workload>.csv, e.g. the data/csv folder of "
    "https://github.com/hkust-adsl/kubernetes-scheduler-simulator or "
    "https://github.com/alibaba/clusterdata/tree/master/cluster-trace-gpu-v2023 (research use only)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("simulate", help="replay a GPU cluster trace under scoring policies")
    p.add_argument(
        "--trace-dir", type=Path, default=None, help=f"openb CSV folder (default {DEFAULT_TRACE_DIR})"
    )
    p.add_argument(
        "--workloads",
        default="default",
        help="comma-separated pod-list stems (openb_pod_list_<stem>.csv in --trace-dir, e.g. "
        "default,multigpu50), or 'all' (default: %(default)s)",
    )
    p.add_argument(
        "--policies",
        default=",".join(POLICY_NAMES),
        help=f"comma-separated scoring policies (default: all of %(default)s); "
        f"'{HINDSIGHT}' adds the offline references {', '.join(HINDSIGHT_NAMES)} (the same "
        "arrivals packed knowing them all, and a lower bound for any packing)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="number of seeds, starting at 42 (the published runs use 42..51; Go's RNG is emulated, so seed "
        "42 here is their seed 42)",
    )
    p.add_argument("--hindsight-steps", type=int, default=DEFAULT_STEPS,
                   help="local-search step budget of the hindsight reference per seed (default: %(default)s)")
    p.add_argument("--hindsight-seconds", type=float, default=DEFAULT_SECONDS,
                   help="CPU-time cap on that local search per seed (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="allocation-ratio figure")
    p.add_argument(
        "--published", type=Path, default=None, help=f"published means CSV (default: ../{PUBLISHED_FILE})"
    )
    p.set_defaults(func=main)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _validate(args: argparse.Namespace, trace_dir: Path) -> list[str]:
    """Every problem with the arguments at once, each naming the flag."""
    errors = []
    if not (trace_dir / NODE_FILE).is_file():
        errors.append(f"--trace-dir {trace_dir}: {HOW_TO_GET_TRACE}")
        return errors
    for w in args.workload_list:
        if not pod_file(trace_dir, w).is_file():
            errors.append(
                f"--workloads: no {pod_file(trace_dir, w).name}; have "
                f"{', '.join(available_workloads(trace_dir))}"
            )
    for p in args.policy_list:
        if p not in POLICY_NAMES and p != HINDSIGHT:
            choices = ", ".join((*POLICY_NAMES, HINDSIGHT))
            errors.append(f"--policies: unknown {p!r}; choose from {choices}")
    if args.hindsight_steps < 0 or args.hindsight_seconds <= 0:
        errors.append("--hindsight-steps must be >= 0 and --hindsight-seconds > 0")
    if args.seeds < 1 or args.jobs < 1:
        errors.append("--seeds and --jobs must be >= 1")
    if args.plot and not plotting_available():
        errors.append(f"--plot: {PLOT_HINT}")  # before the runs, not after them
    return errors


def main(args: argparse.Namespace) -> int:
    trace_dir: Path = args.trace_dir or DEFAULT_TRACE_DIR
    args.policy_list = _split(args.policies)
    args.workload_list = _split(args.workloads)
    if args.workload_list == ["all"] and trace_dir.is_dir():
        args.workload_list = available_workloads(trace_dir)
    errors = _validate(args, trace_dir)
    if errors:
        for e in errors:
            print(f"accel simulate: {e}", file=sys.stderr)
        return 2
    tasks = make_tasks(trace_dir, args.workload_list, args.policy_list, args.seeds,
                       hindsight_steps=args.hindsight_steps, hindsight_seconds=args.hindsight_seconds)

    def progress(rec: Record) -> None:
        r = rec.result
        rate = f"{r.pods / r.seconds:,.0f} pods/s" if r.seconds > 0 else "-"
        print(f"  {rec.workload} {r.policy} seed={r.seed}: {r.unallocated_gpu_pct:.2f}% ({rate})",
              file=sys.stderr)

    records = run_matrix(tasks, jobs=args.jobs, progress=progress)
    if args.output == "json":
        json.dump(to_json_records(records), sys.stdout)
        sys.stdout.write("\n")
    else:
        published_path = args.published or trace_dir.parent / PUBLISHED_FILE
        try:
            published = read_published(published_path)
        except TraceError:
            published = {}
        print(render_table(records, published))
        if HINDSIGHT in args.policy_list:
            print(render_gap_table(summarise(records), args.workload_list))
        try:
            published_runs = read_published_curves(published_path.parent / PUBLISHED_CURVES_FILE)
        except TraceError:
            published_runs = {}
        for line in per_seed_verdict(curves_by_run(records), published_runs)[0]:
            print(line)
    if args.plot:
        plot(records, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
