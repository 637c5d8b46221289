"""Where a command's cluster state and policy come from: a snapshot file, a policy dir, or a cluster.

Every command that reads cluster state takes either `--snapshot FILE` (a `v1 List`, as
`kubectl get nodes,namespaces,pods,configmaps -A -o yaml` prints) or a kubeconfig (default:
in-cluster, then KUBECONFIG / ~/.kube/config). The policy comes from `--policy DIR|FILE`, else
the `accel-policy` ConfigMap in the controller namespace found in the same source.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from accel.capacity.inventory import Inventory, build_inventory
from accel.cluster.catalog import Catalog, load_builtin_catalog
from accel.cluster.text_decode import TextDecodeError, decode_text
from accel.policy.loading import parse_policy
from accel.policy.models import POLICY_FILES, ParsedPolicy, PolicyInvalid

POLICY_CONFIGMAP = "accel-policy"
DEFAULT_NAMESPACE = "accel-system"


class CliError(Exception):
    """A user-facing error: printed as `accel: <message>` with exit code 1."""


@dataclass
class ClusterObjects:
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    configmaps: list[dict[str, Any]] = field(default_factory=list)
    hardware_profiles: list[dict[str, Any]] = field(default_factory=list)  # OpenDataHub, both API groups


def add_source_arguments(parser: argparse.ArgumentParser, *, policy: bool = True) -> None:
    group = parser.add_argument_group("cluster state")
    group.add_argument(
        "--snapshot",
        metavar="FILE",
        help="read nodes/pods/namespaces/configmaps from a v1 List file (YAML or JSON)",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to use instead of in-cluster / KUBECONFIG / ~/.kube/config",
    )
    group.add_argument(
        "--namespace",
        default=os.environ.get("ACCEL_NAMESPACE", DEFAULT_NAMESPACE),
        help="controller namespace holding the accel-policy ConfigMap (default: %(default)s)",
    )
    if policy:
        group.add_argument(
            "--policy",
            metavar="DIR|FILE",
            help="policy directory (settings.yaml, profiles.yaml, teams.yaml) or a ConfigMap file",
        )


def load_objects(args: argparse.Namespace) -> ClusterObjects:
    if args.snapshot:
        from kube.snapshot import SnapshotError, load_snapshot

        try:
            snapshot = load_snapshot(args.snapshot)
        except SnapshotError as exc:
            raise CliError(str(exc)) from exc
        from kube.names import HARDWARE_PROFILE_KINDS

        found = ClusterObjects(
            **{kind: list(snapshot.of(kind)) for kind in ("nodes", "pods", "namespaces", "configmaps")}
        )
        found.hardware_profiles = [obj for kind in HARDWARE_PROFILE_KINDS for obj in snapshot.of(kind)]
        return found
    return asyncio.run(_list_from_cluster(args))


async def _list_from_cluster(args: argparse.Namespace) -> ClusterObjects:
    from kube.client import ApiClientFactory, NoClusterError
    from kube.errors import NotFound
    from kube.names import HARDWARE_PROFILE_KINDS
    from kube.real import KubeCluster

    try:
        api = await ApiClientFactory(kubeconfig=args.kubeconfig).create()
    except NoClusterError as exc:
        raise CliError(str(exc)) from exc
    cluster = KubeCluster(api, controller_namespace=args.namespace)
    try:
        found = ClusterObjects()
        found.nodes, _ = await cluster.source.list("nodes")
        found.pods, _ = await cluster.source.list("pods")
        found.namespaces, _ = await cluster.source.list("namespaces")
        found.configmaps, _ = await cluster.source.list("configmaps", namespace=args.namespace)
        for kind in HARDWARE_PROFILE_KINDS:
            with contextlib.suppress(NotFound):  # CRD not installed: no HardwareProfiles of this group
                found.hardware_profiles += (await cluster.source.list(kind))[0]
        return found
    finally:
        await cluster.close()


def read_text_file(path: Path) -> str:
    """A policy file's text (UTF-8, or UTF-16/UTF-8 with a byte-order mark); CliError when unreadable."""
    try:
        return decode_text(path.read_bytes(), str(path))
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except TextDecodeError as exc:
        raise CliError(str(exc)) from exc


def read_policy_files(path: Path) -> dict[str, str]:
    """Policy files from a directory, or the `data` of a ConfigMap manifest file."""
    if path.is_dir():
        return {name: read_text_file(path / name) for name in POLICY_FILES if (path / name).is_file()}
    if not path.is_file():
        raise CliError(
            f"policy path {path} does not exist; pass a directory with {', '.join(POLICY_FILES[:3])} or a "
            "ConfigMap file"
        )
    text = read_text_file(path)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: invalid YAML: {exc}") from exc
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap" and isinstance(doc.get("data"), dict):
            return {str(k): str(v) for k, v in doc["data"].items()}
    if path.name in POLICY_FILES:
        return {path.name: text}
    raise CliError(
        f"{path}: not a policy directory, a ConfigMap with policy keys, or one of {', '.join(POLICY_FILES)}"
    )


def policy_from_configmaps(configmaps: list[dict[str, Any]], namespace: str) -> dict[str, str] | None:
    for cm in configmaps:
        meta = cm.get("metadata") or {}
        if meta.get("name") == POLICY_CONFIGMAP and meta.get("namespace", namespace) == namespace:
            return {str(k): str(v) for k, v in (cm.get("data") or {}).items()}
    return None


def load_policy(args: argparse.Namespace, objects: ClusterObjects | None, catalog: Catalog) -> ParsedPolicy:
    if getattr(args, "policy", None):
        files = read_policy_files(Path(args.policy))
    else:
        files = policy_from_configmaps(objects.configmaps if objects else [], args.namespace) or {}
        if not files:
            print(
                f"accel: no policy given and no ConfigMap {POLICY_CONFIGMAP} in {args.namespace}; using an "
                "empty policy (pass --policy DIR)",
                file=sys.stderr,
            )
    try:
        return parse_policy(files, catalog, hardware_profiles=objects.hardware_profiles if objects else ())
    except PolicyInvalid as exc:
        raise CliError("policy is invalid:\n  " + "\n  ".join(str(e) for e in exc.errors)) from exc


def load_state(args: argparse.Namespace) -> tuple[ParsedPolicy, Inventory]:
    objects = load_objects(args)
    parsed = load_policy(args, objects, load_builtin_catalog())
    inventory = build_inventory(
        objects.nodes, objects.pods, objects.namespaces, catalog=parsed.catalog, policy=parsed.policy
    )
    return parsed, inventory


def emit(data: Any, output: str) -> None:
    """Print structured data as json or yaml."""
    import orjson

    if output == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


def run_guarded(func: Any, args: argparse.Namespace) -> int:
    try:
        result: int = func(args)
        return result
    except CliError as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 1
