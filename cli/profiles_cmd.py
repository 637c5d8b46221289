"""`accel profiles discover`: draft a profile from a node selection (AC-002)."""

from __future__ import annotations

import argparse
import sys

from accel.profiles.discovery import SelectorError, as_json, draft_profile, select_nodes
from cli.state import CliError, add_source_arguments, emit, load_state, run_guarded


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "profiles", help="hardware profiles: list with availability and price, or discover from nodes"
    )
    actions = parser.add_subparsers(dest="profiles_command", metavar="ACTION")
    discover = actions.add_parser("discover", help="draft a profile (policy YAML) from selected nodes")
    add_source_arguments(discover)
    discover.add_argument("--nodes", default="", help="comma-separated node names")
    discover.add_argument(
        "--selector", "-l", default="", help="label selector, e.g. nvidia.com/gpu.product=NVIDIA-H200"
    )
    discover.add_argument("--name", help="profile name (default: from the first type)")
    discover.add_argument("-o", "--output", default="yaml", choices=("yaml", "json"))
    discover.set_defaults(func=lambda args: run_guarded(_discover, args))
    parser.set_defaults(func=lambda args: run_guarded(_list_profiles, args), profiles_parser=parser)
    add_source_arguments(parser)
    parser.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"))


def _discover(args: argparse.Namespace) -> int:
    if not args.nodes and not args.selector:
        raise CliError("select nodes with --nodes a,b or --selector key=value")
    parsed, inventory = load_state(args)
    try:
        nodes = select_nodes(inventory, names=[n for n in args.nodes.split(",") if n], selector=args.selector)
        draft = draft_profile(nodes, inventory, parsed.catalog, name=args.name, selector=args.selector)
    except SelectorError as exc:
        raise CliError(str(exc)) from exc
    if args.output == "json":
        emit(as_json(draft), "json")
        return 0
    for warning in draft.warnings:
        print(f"# warning: {warning}", file=sys.stderr)
    print(f"# drafted from {len(draft.nodes)} node(s): {', '.join(draft.nodes)}")
    if draft.also_matches:
        print(
            f"# it also matches the other {len(draft.also_matches)} node(s) of its type(s): "
            f"{', '.join(draft.also_matches)}"
        )
    if draft.shared_labels:
        shared = ", ".join(f"{k}={v}" for k, v in draft.shared_labels.items())
        print(f"# labels all selected nodes share, not pinned (add to nodeSelector to restrict): {shared}")
    sys.stdout.write(draft.policy_yaml())
    return 0


def _list_profiles(args: argparse.Namespace) -> int:
    try:
        from accel.profiles.availability import profile_summaries
        from cli.tables import render_profiles_table
    except ModuleNotFoundError as exc:  # pragma: no cover - until the API issue lands
        raise CliError("profile listing is not available in this build") from exc
    parsed, inventory = load_state(args)
    summaries = profile_summaries(parsed, inventory)
    if args.output == "table":
        print(render_profiles_table(summaries))
    else:
        emit({"profiles": [s.model_dump(mode="json", by_alias=True) for s in summaries]}, args.output)
    return 0
