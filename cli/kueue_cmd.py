"""`accel kueue export`: Kueue ResourceFlavors, ClusterQueues and LocalQueues from the policy."""

from __future__ import annotations

import argparse
import sys

import yaml

from accel.quota.kueue_export import DEFAULT_LOCAL_QUEUE, export_objects
from cli.state import add_source_arguments, emit, load_state, run_guarded


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("kueue", help="Kueue integration: export the policy as Kueue objects")
    actions = parser.add_subparsers(dest="kueue_command", metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="ResourceFlavor per accelerator type, ClusterQueue per team, LocalQueue per team namespace",
        description="Print the Kueue objects (kueue.x-k8s.io/v1beta1) that mirror the policy, ready for "
        "`kubectl apply -f -`. Caveats (what Kueue cannot express exactly) are printed as comments.",
    )
    add_source_arguments(export)
    export.add_argument("--local-queue", default=DEFAULT_LOCAL_QUEUE, metavar="NAME",
                        help="name of the LocalQueue made in each team namespace (default: %(default)s)")
    export.add_argument("-o", "--output", default="yaml", choices=("yaml", "json"))
    export.set_defaults(func=lambda args: run_guarded(_export, args))
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def _export(args: argparse.Namespace) -> int:
    parsed, inventory = load_state(args)
    result = export_objects(parsed.policy, parsed.catalog, inventory, local_queue=args.local_queue)
    if args.output == "json":
        emit({"apiVersion": "v1", "kind": "List", "items": result.objects, "notes": result.notes}, "json")
        return 0
    for note in result.notes:
        print(f"# note: {note}")
    sys.stdout.write(yaml.safe_dump_all(result.objects, sort_keys=False, explicit_start=True))
    return 0
