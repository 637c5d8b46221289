"""`accel explain POD`: why the extender put a pod where it is (its `accel.dev/placement` annotation).

The extender writes the annotation in the same storage update as the Binding, so it is on every pod
it bound; a pod bound by someone else (spec.nodeName, another scheduler) has none, and the command
says so instead of guessing. Reads one pod from the cluster (by name, in `-n NAMESPACE`) or from a
`--snapshot` file.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from accel.placement.score import (
    COMPONENTS,
    PLACEMENT_ANNOTATION,
    Explanation,
    ExplanationError,
    parse_explanation,
)
from cli.state import CliError, emit, run_guarded


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "explain", help="why the extender placed a pod on its node (score components, runner-up)"
    )
    parser.add_argument("pod", metavar="POD", help="pod name, or NAMESPACE/NAME")
    parser.add_argument(
        "-n", "--pod-namespace", default="default", help="the pod's namespace (default: %(default)s)"
    )
    group = parser.add_argument_group("cluster state")
    group.add_argument("--snapshot", metavar="FILE", help="read the pod from a v1 List file (YAML or JSON)")
    group.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to use instead of in-cluster / KUBECONFIG / ~/.kube/config",
    )
    parser.add_argument("-o", "--output", default="text", choices=("text", "json", "yaml"))
    parser.set_defaults(func=lambda args: run_guarded(_run, args))


def _target(args: argparse.Namespace) -> tuple[str, str]:
    namespace, _, name = args.pod.rpartition("/")
    name, namespace = name.strip(), (namespace or args.pod_namespace).strip()
    if not name or not namespace:
        raise CliError(
            f"explain: {args.pod!r} is not a pod name; give NAME (with -n NAMESPACE) or NAMESPACE/NAME"
        )
    return namespace, name


def _from_snapshot(path: str, namespace: str, name: str) -> dict[str, Any] | None:
    from kube.snapshot import SnapshotError, load_snapshot

    try:
        snapshot = load_snapshot(path)
    except SnapshotError as exc:
        raise CliError(str(exc)) from exc
    for pod in snapshot.of("pods"):
        meta = pod.get("metadata") or {}
        if meta.get("name") == name and (meta.get("namespace") or "default") == namespace:
            return dict(pod)
    return None


async def _from_cluster(kubeconfig: str | None, namespace: str, name: str) -> dict[str, Any] | None:
    from kube.client import ApiClientFactory, NoClusterError
    from kube.real import KubeCluster

    try:
        api = await ApiClientFactory(kubeconfig=kubeconfig).create()
    except NoClusterError as exc:
        raise CliError(str(exc)) from exc  # the message already says how to run from a --snapshot
    cluster = KubeCluster(api)
    try:
        found, _ = await cluster.source.list("pods", namespace=namespace, name=name)
        return dict(found[0]) if found else None
    finally:
        await cluster.close()


def explanation_of(pod: dict[str, Any]) -> Explanation:
    """The pod's explanation; CliError saying why there is none."""
    meta = pod.get("metadata") or {}
    key = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
    text = (meta.get("annotations") or {}).get(PLACEMENT_ANNOTATION)
    if not text:
        node = (pod.get("spec") or {}).get("nodeName")
        where = (
            f"it is on {node}, bound by something other than the accel extender"
            if node
            else "it is not bound yet"
        )
        raise CliError(f"explain: pod {key} has no {PLACEMENT_ANNOTATION} annotation: {where}")
    try:
        return parse_explanation(text)
    except ExplanationError as exc:
        raise CliError(f"explain: pod {key}: {exc}") from None


def render(key: str, found: Explanation) -> str:
    lines = [
        f"{key} on {found.node} ({found.accelerator_type or 'no accelerator'}): score {found.score} of 10"
    ]
    if found.job:
        lines.append(f"  job {found.job}")
    lines.append("  score components (points):")
    for name in (*COMPONENTS, "reservation", "rounding"):
        value = found.components.get(name, 0.0)
        if name in COMPONENTS or abs(value) > 1e-9:
            label = {"preference": "type preference", "reservation": "held for another job"}.get(name, name)
            lines.append(f"    {label:<22} {value:+6.2f}")
    lines.append(f"    {'= score':<22} {found.total():6.2f}")
    if found.runner_up is not None:
        lines.append(
            f"  runner-up: {found.runner_up} scored {found.runner_up_score} ({found.candidates} candidates "
            "scored)"
        )
    else:
        lines.append("  runner-up: none (the only node that passed the filters)")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    namespace, name = _target(args)
    pod = (
        _from_snapshot(args.snapshot, namespace, name)
        if args.snapshot
        else asyncio.run(_from_cluster(args.kubeconfig, namespace, name))
    )
    if pod is None:
        raise CliError(
            f"explain: no pod {namespace}/{name}" + (f" in {args.snapshot}" if args.snapshot else "")
        )
    found = explanation_of(pod)
    if args.output == "text":
        print(render(f"{namespace}/{name}", found))
    else:
        emit(
            {
                "pod": f"{namespace}/{name}",
                "node": found.node,
                "type": found.accelerator_type,
                "score": found.score,
                "components": found.components,
                "runnerUp": {"node": found.runner_up, "score": found.runner_up_score},
                "candidates": found.candidates,
                "job": found.job,
            },
            args.output,
        )
    return 0
