"""`accel nodes`: the node view (AC-001)."""

from __future__ import annotations

import argparse
import sys

from accel.capacity.nodeview import SORT_KEYS, node_rows, unknown_type_filter
from cli.state import CliError, add_source_arguments, emit, load_state, run_guarded
from cli.tables import TABLE_COLUMNS, render_table, table_cells


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "nodes", help="node view: GPU type, count, allocation, sharing, topology, status"
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        help="only nodes of this canonical type (repeatable; also 'mixed', 'unknown')",
    )
    parser.add_argument("--sort", default="name", choices=SORT_KEYS)
    parser.add_argument("--desc", action="store_true", help="sort descending")
    parser.add_argument("--all", action="store_true", help="include nodes without accelerators")
    parser.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"))
    parser.set_defaults(func=lambda args: run_guarded(_run, args))


def _run(args: argparse.Namespace) -> int:
    parsed, inventory = load_state(args)
    types = [t for value in args.type for t in value.split(",") if t]
    problem = unknown_type_filter(types, parsed.catalog)
    if problem:
        raise CliError(f"--type: {problem}")
    rows = node_rows(
        inventory,
        parsed.catalog,
        type_filter=types,
        sort=args.sort,
        descending=args.desc,
        accelerators_only=not args.all,
    )
    if args.output == "table":
        print(
            render_table([h for h, _ in TABLE_COLUMNS], [table_cells(r) for r in rows])
            if rows
            else "no nodes match"
        )
    else:
        emit({"nodes": [r.model_dump(mode="json") for r in rows]}, args.output)
    sys.stdout.flush()  # the warnings below the table, not inside it, when both go to a terminal
    for row in rows:
        for warning in row.warnings:
            print(f"accel: warning: node {row.name}: {warning}", file=sys.stderr)
    return 0
