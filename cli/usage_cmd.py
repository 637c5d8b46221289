"""`accel usage --since 7d`: GPU-hours and cost per team and type (chargeback)."""

from __future__ import annotations

import argparse
import asyncio
import time

from accel.capacity.inventory import build_inventory
from accel.quota.chargeback import parse_window, usage_from_pods, usage_report
from cli.state import CliError, add_source_arguments, emit, load_objects, load_policy, run_guarded


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "usage",
        help="GPU-hours and cost per team and type over a window (chargeback)",
        description="From Prometheus (the accel_gpu_seconds_total / accel_gpu_cost_total counters) when "
        "settings api.prometheusUrl or --prometheus is set, else from the pods in the cluster now. "
        "The answer says which.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--since", default="7d", help="window ending now: 30m, 12h, 7d, 2w (default: %(default)s)"
    )
    parser.add_argument(
        "--prometheus", metavar="URL", help="Prometheus base URL (overrides api.prometheusUrl)"
    )
    parser.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"))
    parser.set_defaults(func=lambda args: run_guarded(_usage, args))


def _usage(args: argparse.Namespace) -> int:
    from accel.cluster.catalog import load_builtin_catalog
    from serving.prometheus import PrometheusError, usage_from_prometheus

    try:
        window_s = parse_window(args.since)
    except ValueError as exc:
        raise CliError(f"--since: {exc}") from exc
    objects = load_objects(args)
    parsed = load_policy(args, objects, load_builtin_catalog())
    url = args.prometheus or parsed.policy.settings.api.prometheus_url
    if url:
        try:
            rolled = asyncio.run(usage_from_prometheus(url, window_s))
        except PrometheusError as exc:
            raise CliError(str(exc)) from exc
        report = usage_report(rolled, window=args.since, window_s=window_s, source="prometheus")
    else:
        inventory = build_inventory(
            objects.nodes, objects.pods, objects.namespaces, catalog=parsed.catalog, policy=parsed.policy
        )
        rolled = usage_from_pods(
            objects.pods,
            policy=parsed.policy,
            catalog=parsed.catalog,
            inventory=inventory,
            window_s=window_s,
            now=time.time(),
        )
        report = usage_report(rolled, window=args.since, window_s=window_s, source="pods")
    if args.output != "table":
        emit(report, args.output)
        return 0
    print(render_usage(report))
    return 0


def render_usage(report: dict[str, object]) -> str:
    """The table `accel usage` prints, with the note saying where the numbers come from."""
    rows = report["rows"]
    assert isinstance(rows, list)
    lines = [f"{'TEAM':<16} {'TYPE':<22} {'GPU-HOURS':>10} {'COST':>12}"]
    lines += [
        f"{r['team'] or '-':<16} {r['type']:<22} {r['gpuHours']:>10.2f} {r['cost']:>12.2f}" for r in rows
    ]
    totals = report["totals"]
    assert isinstance(totals, dict)
    lines.append(
        f"{'total':<16} {'':<22} {totals['gpuHours']:>10.2f} {totals['cost']:>12.2f} {report['currency']}"
    )
    lines.append(f"# last {report['window']}, {report['note']}")
    return "\n".join(lines)
