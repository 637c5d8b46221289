"""`accel policy validate DIR|FILE`: check a policy before applying it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import PolicyInvalid
from cli.state import CliError, read_policy_files


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("policy", help="policy tools")
    actions = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help="validate a policy directory or ConfigMap file; exit 1 listing every error"
    )
    validate.add_argument(
        "path",
        metavar="DIR|FILE",
        help="a directory holding settings.yaml, profiles.yaml, teams.yaml (and optionally "
        "accelerators.yaml), "
        "a ConfigMap manifest with those keys, or one of those files",
    )
    validate.add_argument(
        "--hardware-profiles",
        metavar="FILE",
        help="OpenDataHub HardwareProfiles to validate with the policy (YAML: objects, a multi-document "
        "stream or a v1 List, as `kubectl get hardwareprofiles -A -o yaml` prints)",
    )
    validate.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    try:
        files = read_policy_files(Path(args.path))
    except (CliError, OSError) as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 1
    try:
        profiles = (
            _hardware_profiles(Path(args.hardware_profiles))
            if getattr(args, "hardware_profiles", None)
            else []
        )
    except CliError as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 1
    try:
        parsed = parse_policy(files, load_builtin_catalog(), hardware_profiles=profiles)
    except PolicyInvalid as exc:
        print(f"{args.path}: {len(exc.errors)} error(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    policy = parsed.policy
    print(
        f"{args.path}: valid ({len(policy.profiles)} profiles, {len(policy.teams)} teams, mode "
        f"{policy.settings.mode.value})"
    )
    return 0


def _hardware_profiles(path: Path) -> list[dict[str, Any]]:
    """HardwareProfile objects from a file (single objects, `---` streams or `v1 List`s)."""
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: cannot read HardwareProfiles: {exc}") from exc
    items = [item for doc in documents if isinstance(doc, dict)
             for item in (doc.get("items") or [] if doc.get("kind", "").endswith("List") else [doc])]
    found = [item for item in items if isinstance(item, dict) and item.get("kind") == "HardwareProfile"]
    if not found:
        raise CliError(f"{path}: no HardwareProfile objects found (expected kind: HardwareProfile)")
    return found
