"""`accel demo` (what `make run` runs): a simulated day on a sample cluster, through the real servers.

Starts the admission webhook, the scheduler extender and the hardware-profile API in this process
over HTTPS on 127.0.0.1 (random free ports, a throw-away CA), loads the sample policy and cluster,
drives a seeded day of pod creations as kube-apiserver and kube-scheduler would (cli.demo_driver),
then prints a summary and writes `report.md`, `allocation.png` and `chargeback.png` to `--out`.
See docs/demo.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from cli.demo_driver import run_day
from cli.demo_records import DemoOptions, DemoResult, Progress
from cli.state import CliError

DEFAULT_PODS = 500
REPO_ROOT = Path(__file__).resolve().parent.parent
BAR_WIDTH = 30


def _default(relative: str) -> Path:
    """Sample files relative to the working directory, else to the source checkout."""
    here = Path(relative)
    return here if here.exists() else REPO_ROOT / relative


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo", help="simulated day on a sample cluster through the real webhook, extender and API"
    )
    parser.add_argument(
        "--pods", type=int, default=DEFAULT_PODS, help="pods to submit over the day (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="workload and tie-break seed (default: %(default)s)"
    )
    parser.add_argument("--policy", metavar="DIR", help="policy directory (default: examples/policy)")
    parser.add_argument(
        "--snapshot", metavar="FILE", help="cluster snapshot (default: examples/cluster.yaml)"
    )
    parser.add_argument(
        "--out", metavar="DIR", default="accel-demo", help="report directory (default: %(default)s)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (a bar on a terminal, a line per tenth of the run otherwise)",
    )
    parser.set_defaults(func=_run)


class ProgressBar:
    """Pods done / total, admitted, denied, rate on a stream.

    On a terminal: one `\\r`-redrawn bar. Otherwise (CI logs, `2> file`) a redrawn bar would be
    one line of hundreds of updates, so a plain line is written at every tenth of the run instead.
    """

    def __init__(self, stream: TextIO, *, width: int = BAR_WIDTH, interactive: bool | None = None) -> None:
        self.stream, self.width = stream, width
        self.interactive = stream.isatty() if interactive is None else interactive
        self._next_tenth = 1

    def __call__(self, p: Progress) -> None:
        rate = p.done / max(time.monotonic() - p.started, 1e-9)
        counts = f"{p.done}/{p.total} pods  admitted {p.admitted}  denied {p.denied}  {rate:.0f} pods/s"
        if not self.interactive:
            if p.done * 10 >= self._next_tenth * max(p.total, 1):
                self._next_tenth = p.done * 10 // max(p.total, 1) + 1
                self.stream.write(f"progress: {counts}\n")
                self.stream.flush()
            return
        filled = self.width * p.done // max(p.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {counts} ")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def options_from(args: argparse.Namespace) -> DemoOptions:
    if args.pods < 1:
        raise CliError(f"--pods must be at least 1, got {args.pods}")
    policy = Path(args.policy) if args.policy else _default("examples/policy")
    snapshot = Path(args.snapshot) if args.snapshot else _default("examples/cluster.yaml")
    for what, path in (("--policy", policy), ("--snapshot", snapshot)):
        if not path.exists():
            raise CliError(f"{what} {path} does not exist")
    _check_policy(policy)
    return DemoOptions(pods=args.pods, seed=args.seed, policy_dir=policy, snapshot=snapshot)


def _check_policy(path: Path) -> None:
    """Fail now, with every error, rather than after the servers waited for a policy in force."""
    from accel.cluster.catalog import load_builtin_catalog
    from accel.policy.loading import parse_policy
    from accel.policy.models import PolicyInvalid
    from cli.state import read_policy_files

    try:
        parse_policy(read_policy_files(path), load_builtin_catalog())
    except PolicyInvalid as exc:
        raise CliError(f"--policy {path} is invalid:\n  " + "\n  ".join(str(e) for e in exc.errors)) from exc


async def run_demo(options: DemoOptions, *, progress: ProgressBar | None = None) -> DemoResult:
    """Start the servers in a temp dir, drive the day, stop the servers."""
    from cli.demo_servers import run_servers

    with tempfile.TemporaryDirectory(prefix="accel-demo-") as tmp:
        async with run_servers(
            policy_dir=options.policy_dir, snapshot=options.snapshot, workdir=Path(tmp)
        ) as servers:
            return await run_day(servers, options, on_progress=progress)


def _run(args: argparse.Namespace) -> int:
    from cli.demo_report import summary_text, write_report

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("accel.audit.policy").setLevel(logging.ERROR)
    try:
        options = options_from(args)
        bar = None if args.no_progress else ProgressBar(sys.stderr)
        result = asyncio.run(run_demo(options, progress=bar))
        if bar is not None:
            bar.close()
    except CliError as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    files = write_report(result, out)
    sys.stdout.write(summary_text(result))
    sys.stdout.write("\nwrote " + ", ".join(str(f) for f in files) + "\n")
    return 0
