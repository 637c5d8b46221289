"""The `accel` command line: wires the pure core to files, clusters and servers.

Each sub-command lives in its own module under `cli/` and exposes
`register(subparsers: argparse._SubParsersAction) -> None`, which adds its parser and sets
`func=<callable(args) -> int>` as the parser default. `main` only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules are imported lazily by name so a broken optional command cannot break the others,
# and so `accel nodes` does not pay for importing aiohttp or matplotlib.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.nodes",
    "cli.policy_cmd",
    "cli.profiles_cmd",
    "cli.serve",
    "cli.demo",
    "cli.simulate",
    "cli.estimate",
    "cli.certs_cmd",
    "cli.kueue_cmd",
    "cli.usage_cmd",
    "cli.explain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accel", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
