"""The `accel` command line: wires the pure core to files, clusters and servers.

Each sub-command lives in its own module under `cli/` and exposes
`register(subparsers: argparse._SubParsersAction) -> None`, which adds its parser and sets
`func=<callable(args) -> int>` as the parser default. `main` only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# What a shell reports for a command ended by SIGPIPE (128 + 13), as `yes | head -1` does.
EXIT_BROKEN_PIPE = 141

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
    try:
        args = parser.parse_args(argv)  # `--help` prints too, so it is inside the guard
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return 2
        result: int = func(args)
        # Flush here, inside the guard: output still buffered at interpreter exit would raise the
        # BrokenPipeError where nothing can catch it ("Exception ignored ... BrokenPipeError").
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()
    except SystemExit:
        # argparse exits after `--help` or a usage error; its output may still be buffered.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_went_away()
        raise
    except KeyboardInterrupt:
        print("accel: interrupted", file=sys.stderr)
        return 130
    return result


def _reader_went_away() -> int:
    """`accel ... | head`: the reader closed the pipe. Exit quietly, as `cat` does.

    stdout is pointed at /dev/null so the interpreter's final flush of what is still buffered
    cannot fail again at exit.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
