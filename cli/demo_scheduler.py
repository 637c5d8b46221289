"""kube-scheduler's own filters and node choice, as the demo needs them around the extender.

kube-scheduler runs its built-in filter plugins first and sends the extender only the nodes that
passed (protocols.md 1.3). This is a small stand-in for those plugins, not a policy: it knows
nothing about profiles, quota or GPU types beyond what the pod spec says.

Rules (the upstream plugin each mirrors):
1. NodeUnschedulable / node lifecycle: cordoned and NotReady nodes are out.
2. TaintToleration: every NoSchedule/NoExecute taint must be tolerated.
3. NodeAffinity: `spec.nodeSelector` and required node affinity (terms ORed, expressions ANDed;
   In, NotIn, Exists, DoesNotExist, Gt, Lt; matchFields on metadata.name).
4. NodeResourcesFit: cpu, memory and every accelerator resource requested fit what is left of
   the node's allocatable after the bound, non-terminal pods.
5. Choice: the highest score wins; ties are broken uniformly at random with the caller's seeded
   `random.Random` (kube-scheduler's `selectHost` reservoir sampling, made reproducible).
6. `SchedulerCache` is the scheduler's own informer cache: `accel.capacity.inventory.build_inventory`'s
   result, but a node is re-normalised only when it or the pods bound to it changed (the demo asks
   for the inventory after almost every change; rebuilding all nodes each time dominated its run).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from accel.capacity.free import node_free_units
from accel.capacity.inventory import Inventory, NodeInventory, ParseCache, build_node
from accel.cluster.pods import PodView
from accel.policy.models import ParsedPolicy
from kube.informer import ClusterWatcher

Obj = Mapping[str, Any]


def tolerates(tolerations: Sequence[Obj], taint: Obj) -> bool:
    """Rule 2 for one taint."""
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if not tol.get("key"):
            if tol.get("operator") == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists" or str(tol.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def _expression_holds(expr: Obj, labels: Mapping[str, str]) -> bool:
    key, op, values = (
        str(expr.get("key")),
        str(expr.get("operator")),
        [str(v) for v in expr.get("values") or ()],
    )
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_holds(term: Obj, node: NodeInventory) -> bool:
    exprs = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not exprs and not fields:
        return False  # an empty term matches nothing
    names = {"metadata.name": node.name}
    return all(_expression_holds(e, node.labels) for e in exprs) and all(
        _expression_holds(f, names) for f in fields
    )


def affinity_allows(spec: Obj, node: NodeInventory) -> bool:
    """Rule 3."""
    selector = spec.get("nodeSelector") or {}
    if any(node.labels.get(str(k)) != str(v) for k, v in selector.items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    return any(_term_holds(term, node) for term in required.get("nodeSelectorTerms") or ())


def resources_fit(pod: PodView, node: NodeInventory) -> bool:
    """Rule 4."""
    if pod.cpu_milli > node.cpu_allocatable_milli - node.cpu_requested_milli:
        return False
    if pod.memory_bytes > node.memory_allocatable_bytes - node.memory_requested_bytes:
        return False
    free = node_free_units(node)
    return all(free.get(resource, 0) >= units for resource, units in pod.accelerators.items())


def node_verdict(spec: Obj, pod: PodView, node: NodeInventory) -> str:
    """"" when the node passes rules 1-4, else kube-scheduler's phrase for the first failing one."""
    if not node.ready:
        return "node(s) were not ready"
    if node.cordoned:
        return "node(s) were unschedulable"
    tolerations = list(spec.get("tolerations") or ())
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    if not affinity_allows(spec, node):
        return "node(s) didn't match Pod's node affinity/selector"
    if not resources_fit(pod, node):
        return "node(s) had insufficient resources"
    return ""


def feasible_nodes(pod_obj: Obj, pod: PodView, inventory: Inventory) -> list[str]:
    """Names of the nodes passing rules 1-4, in inventory (name) order."""
    spec = pod_obj.get("spec") or {}
    return [node.name for node in inventory.nodes if not node_verdict(spec, pod, node)]


def unschedulable_message(pod_obj: Obj, pod: PodView, inventory: Inventory) -> str:
    """kube-scheduler's FailedScheduling summary: `0/18 nodes are available: 3 node(s) ...`."""
    spec = pod_obj.get("spec") or {}
    counts: dict[str, int] = {}
    for node in inventory.nodes:
        verdict = node_verdict(spec, pod, node)
        if verdict:
            counts[verdict] = counts.get(verdict, 0) + 1
    parts = ", ".join(f"{n} {why}" for why, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"0/{len(inventory.nodes)} nodes are available: {parts}."


def select_host(scores: Mapping[str, int], rng: random.Random) -> str:
    """Rule 5; `scores` must not be empty."""
    if not scores:
        raise ValueError("select_host needs at least one scored node")
    best = max(scores.values())
    top = sorted(name for name, score in scores.items() if score == best)
    return top[0] if len(top) == 1 else rng.choice(top)


class SchedulerCache:
    """Rule 6: an inventory over a `ClusterWatcher`'s stores, memoised per node and per version."""

    def __init__(self, watcher: ClusterWatcher, parsed: ParsedPolicy) -> None:
        self.watcher, self.parsed = watcher, parsed
        self._pods = ParseCache()
        self._nodes: dict[str, tuple[tuple[object, ...], NodeInventory]] = {}
        self._version: tuple[int, int, int] | None = None
        self._inventory = Inventory()

    def _node(self, obj: Obj, bound: list[PodView]) -> NodeInventory:
        meta = obj.get("metadata") or {}
        key = (
            meta.get("resourceVersion"),
            tuple((p.key, p.cpu_milli, p.memory_bytes, tuple(sorted(p.accelerators.items()))) for p in bound),
        )
        found = self._nodes.get(str(meta.get("name")))
        if found is None or found[0] != key:
            found = (key, build_node(obj, self.parsed.catalog, bound, self.parsed.policy))
            self._nodes[str(meta.get("name"))] = found
        return found[1]

    def inventory(self) -> Inventory:
        w = self.watcher
        version = (w.nodes.version, w.pods.version, w.namespaces.version)
        if version == self._version:
            return self._inventory
        live = [p for p in (self._pods.pod(o) for o in w.pods.items()) if not p.terminal]
        by_node: dict[str, list[PodView]] = {}
        for pod in sorted(live, key=lambda p: p.key):
            if pod.node_name:
                by_node.setdefault(pod.node_name, []).append(pod)
        nodes = sorted(
            (
                self._node(o, by_node.get(str((o.get("metadata") or {}).get("name")), []))
                for o in w.nodes.items()
            ),
            key=lambda n: n.name,
        )
        labels, annotations = {}, {}
        for ns in w.namespaces.items():
            meta = ns.get("metadata") or {}
            labels[str(meta.get("name"))] = dict(meta.get("labels") or {})
            annotations[str(meta.get("name"))] = dict(meta.get("annotations") or {})
        self._inventory = Inventory(nodes=tuple(nodes), pods=tuple(p for p in live if p.wants_accelerators),
                                    namespace_labels=labels, namespace_annotations=annotations)
        self._version = version
        return self._inventory
