"""The cluster inventory: per node what it has, what is used and what is free; per team what it uses.

Built from plain object dicts (Nodes, Pods, Namespaces as the API returns them) so the same code
serves a `--snapshot` file, a live watch cache and the simulator-driven demo.

Invariants:
1. Only bound, non-terminal pods allocate node resources; terminal pods free them at once.
2. Team usage counts bound AND pending non-terminal pods (quota is about what is asked for).
3. A node with GPUs in capacity but no labels appears with type `unknown`; nothing here raises on
   malformed objects (a bad object becomes an empty/unknown entry).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SkipValidation

from accel.capacity.pod_types import MIG_INFIX, SHARED_SUFFIX, TypeIndex, selectable_types
from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.cluster.gpu_equivalents import SHARED_SUFFIX as SHARED_RESOURCE_SUFFIX
from accel.cluster.gpu_equivalents import unit_fraction
from accel.cluster.labels import NodeAccelerators, Sharing, normalise_node
from accel.cluster.pods import PodView, parse_pod
from accel.cluster.quantity import QuantityError, parse_bytes, parse_milli
from accel.policy.kueue import kueue_scope, pod_is_queued
from accel.policy.models import Policy, Profile
from accel.policy.models import Sharing as ProfileSharing

QUOTA_TYPE_ANNOTATION = "accel.dev/quota-type"


class NodeInventory(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    labels: Mapping[str, str] = Field(default_factory=dict)
    accelerators: NodeAccelerators
    ready: bool = True
    cordoned: bool = False
    taints: tuple[Mapping[str, Any], ...] = ()
    allocated: Mapping[str, int] = Field(default_factory=dict)  # accelerator resource -> units in use
    cpu_allocatable_milli: int = 0
    cpu_requested_milli: int = 0
    memory_allocatable_bytes: int = 0
    memory_requested_bytes: int = 0
    pod_keys: tuple[str, ...] = ()  # accelerator pods bound here

    @property
    def accelerator_type(self) -> str | None:
        return self.accelerators.primary_type

    @property
    def schedulable(self) -> bool:
        return self.ready and not self.cordoned

    @property
    def status(self) -> str:
        if not self.ready:
            return "NotReady"
        return "Ready,SchedulingDisabled" if self.cordoned else "Ready"

    def gpu_equivalents(self, resource: str, units: int, catalog: Catalog) -> Fraction:
        mig = self.accelerators.mig
        single = next(iter(mig.slices), None) if mig and mig.strategy == "single" else None
        accel_type = catalog.get(self.accelerator_type or UNKNOWN_TYPE)
        replicas = self.accelerators.replicas if self.accelerators.sharing is not Sharing.EXCLUSIVE else 1
        return units * unit_fraction(
            resource, accel_type=accel_type, replicas=replicas, mig_single_profile=single
        )

    def gpus_allocated(self, catalog: Catalog) -> Fraction:
        return sum((self.gpu_equivalents(r, n, catalog) for r, n in self.allocated.items()), Fraction(0))


class Inventory(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodes: tuple[NodeInventory, ...] = ()
    pods: tuple[PodView, ...] = ()  # accelerator pods only, non-terminal
    namespace_labels: Mapping[str, Mapping[str, str]] = Field(default_factory=dict)
    namespace_annotations: Mapping[str, Mapping[str, str]] = Field(default_factory=dict)
    # uids of pods the watch showed deleted lately, also ones no inventory ever held (created and
    # deleted between two builds): their quota entries are consumed (accel.quota.rules.watch_ids).
    # Taken as given (the cluster state's one set per change), not copied item by item.
    deleted_pods: SkipValidation[frozenset[str]] = frozenset()

    _node_index: dict[str, NodeInventory] = PrivateAttr(default_factory=dict)
    _type_index: tuple[Catalog, TypeIndex] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        self._node_index = {n.name: n for n in self.nodes}

    def node(self, name: str) -> NodeInventory | None:
        return self._node_index.get(name)

    def type_index(self, catalog: Catalog) -> TypeIndex:
        """Label value -> types for these nodes and `catalog` (accel.capacity.pod_types), built once."""
        found = self._type_index
        if found is None or found[0] is not catalog:
            found = self._type_index = (catalog, TypeIndex(catalog, self.nodes))
        return found[1]

    def team_of(self, namespace: str, team_label: str) -> str | None:
        return self.namespace_labels.get(namespace, {}).get(team_label)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _safe(parse: Any, value: Any) -> int:
    try:
        return int(parse(value)) if value is not None else 0
    except QuantityError:
        return 0


def _node_ready(status: Mapping[str, Any]) -> bool:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return True  # snapshots written by hand often omit conditions; absent means unknown, not down
    ready = [c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"]
    return not ready or ready[0].get("status") == "True"


def _topology_keys(policy: Policy | None) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    return tuple(policy.settings.topology_keys.items()) if policy and policy.settings.topology_keys else None


def build_node(
    obj: Mapping[str, Any],
    catalog: Catalog,
    bound: Iterable[PodView],
    policy: Policy | None = None,
    *,
    accelerators: NodeAccelerators | None = None,
) -> NodeInventory:
    """One node's inventory; `accelerators` skips label normalisation when already known."""
    metadata, spec, status = (
        _mapping(obj.get("metadata")),
        _mapping(obj.get("spec")),
        _mapping(obj.get("status")),
    )
    labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()}
    capacity, allocatable = _mapping(status.get("capacity")), _mapping(status.get("allocatable"))
    if accelerators is None:
        topology_keys = _topology_keys(policy)
        kwargs = {"topology_keys": topology_keys} if topology_keys else {}
        accelerators = normalise_node(labels, capacity, allocatable or capacity, catalog, **kwargs)
    allocated: dict[str, int] = defaultdict(int)
    cpu = memory = 0
    keys = []
    for pod in bound:
        cpu += pod.cpu_milli
        memory += pod.memory_bytes
        for resource, units in pod.accelerators.items():
            allocated[resource] += units
        if pod.accelerators:
            keys.append(pod.key)
    taints = tuple(t for t in spec.get("taints") or () if isinstance(t, Mapping))
    return NodeInventory(
        name=str(metadata.get("name") or ""),
        labels=labels,
        accelerators=accelerators,
        ready=_node_ready(status),
        cordoned=bool(spec.get("unschedulable")),
        taints=taints,
        allocated=dict(allocated),
        cpu_allocatable_milli=_safe(parse_milli, (allocatable or capacity).get("cpu")),
        cpu_requested_milli=cpu,
        memory_allocatable_bytes=_safe(parse_bytes, (allocatable or capacity).get("memory")),
        memory_requested_bytes=memory,
        pod_keys=tuple(keys),
    )


@dataclass(frozen=True, slots=True)
class _NodeEntry:
    version: str
    catalog: Catalog
    topology: tuple[tuple[str, tuple[str, ...]], ...] | None
    bound: tuple[PodView, ...]
    node: NodeInventory


class ParseCache:
    """Memo of parsed pods by (uid, resourceVersion) and of built nodes by (name, resourceVersion),
    so rebuilding the inventory after a watch event redoes only what changed.

    A node entry is reused while its resourceVersion, the catalog object and the topology keys
    are the same; when only its bound pods changed, its label normalisation (the expensive part:
    about 0.25 ms a node) is reused and just the allocation is recounted. Objects without a
    resourceVersion (hand-written snapshots) are never cached.
    """

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], PodView] = {}
        self._nodes: dict[str, _NodeEntry] = {}

    def node(
        self, obj: Mapping[str, Any], catalog: Catalog, bound: tuple[PodView, ...], policy: Policy | None
    ) -> NodeInventory:
        meta = _mapping(obj.get("metadata"))
        version = str(meta.get("resourceVersion") or "")
        if not version:
            return build_node(obj, catalog, bound, policy)
        name, topology = str(meta.get("name") or ""), _topology_keys(policy)
        entry = self._nodes.get(name)
        if (
            entry is not None
            and entry.version == version
            and entry.catalog is catalog
            and entry.topology == topology
        ):
            if len(entry.bound) == len(bound) and all(
                a is b for a, b in zip(entry.bound, bound, strict=True)
            ):
                return entry.node
            node = build_node(obj, catalog, bound, policy, accelerators=entry.node.accelerators)
        else:
            node = build_node(obj, catalog, bound, policy)
        self._nodes[name] = _NodeEntry(version, catalog, topology, bound, node)
        return node

    def pod(self, obj: Mapping[str, Any]) -> PodView:
        meta = _mapping(obj.get("metadata"))
        version = str(meta.get("resourceVersion") or "")
        if not version:
            return parse_pod(obj)
        key = (str(meta.get("uid") or meta.get("name") or ""), version)
        found = self._pods.get(key)
        if found is None:
            found = self._pods[key] = parse_pod(obj)
        return found

    def retain(self, live_keys: set[tuple[str, str]], live_nodes: set[str] | None = None) -> None:
        """Forget entries not in the live sets so the memo never grows past the watched set."""
        self._pods = {k: v for k, v in self._pods.items() if k in live_keys}
        if live_nodes is not None:
            self._nodes = {k: v for k, v in self._nodes.items() if k in live_nodes}


def build_inventory(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    namespaces: Iterable[Mapping[str, Any]] = (),
    *,
    catalog: Catalog,
    policy: Policy | None = None,
    cache: ParseCache | None = None,
    deleted_pods: Iterable[str] = (),
) -> Inventory:
    """Assemble the inventory from object dicts (any order, any source); `deleted_pods`: uids the
    watch showed deleted lately (`Inventory.deleted_pods`)."""
    parse = cache.pod if cache else parse_pod
    live = [p for p in (parse(obj) for obj in pods) if not p.terminal]
    by_node: dict[str, list[PodView]] = defaultdict(list)
    for pod in live:
        if pod.node_name:
            by_node[pod.node_name].append(pod)

    def node_of(obj: Mapping[str, Any]) -> NodeInventory:
        bound = tuple(by_node.get(_node_name(obj), ()))
        return cache.node(obj, catalog, bound, policy) if cache else build_node(obj, catalog, bound, policy)

    built = tuple(sorted((node_of(obj) for obj in nodes), key=lambda n: n.name))
    ns_labels: dict[str, Mapping[str, str]] = {}
    ns_annotations: dict[str, Mapping[str, str]] = {}
    for ns in namespaces:
        meta = _mapping(ns.get("metadata"))
        name = str(meta.get("name") or "")
        ns_labels[name] = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
        ns_annotations[name] = {str(k): str(v) for k, v in _mapping(meta.get("annotations")).items()}
    return Inventory(
        nodes=built,
        pods=tuple(p for p in live if p.wants_accelerators),
        namespace_labels=ns_labels,
        namespace_annotations=ns_annotations,
        deleted_pods=frozenset(deleted_pods),
    )


def _node_name(obj: Mapping[str, Any]) -> str:
    return str(_mapping(obj.get("metadata")).get("name") or "")


UNDECIDED_TYPE = ""  # = accel.quota.UNDECIDED: a pending pod whose type the bind will fix


def pod_accelerator_type(pod: PodView, inventory: Inventory, catalog: Catalog) -> str:
    """The type a pod uses or will use (accel.quota invariant 1), from nothing its author can
    change after admission (issue 21): a bound pod's node type (the hardware); a pending pod's
    only possible type under its immutable node selection (the required node affinity the
    webhook wrote, `spec.nodeSelector`: accel.capacity.pod_types), else UNDECIDED (several
    types, or none named: the bind fixes and checks the type). Never an annotation: the type
    annotation and the profile are editable with `kubectl annotate` while the pod is pending."""
    if pod.node_name and (node := inventory.node(pod.node_name)) and node.accelerator_type:
        return node.accelerator_type
    types = selectable_types(pod.required_terms, pod.node_selector, inventory.type_index(catalog))
    return next(iter(types)) if types is not None and len(types) == 1 else UNDECIDED_TYPE


def pod_gpu_equivalents(
    pod: PodView, inventory: Inventory, catalog: Catalog, policy: Policy | None = None
) -> Fraction:
    """GPU-equivalents a pod holds (bound: its node's real sharing) or asks for (pending:
    `pending_equivalents` on the type it is charged as). `policy` is not read: nothing but the
    pod's immutable spec and the nodes decide a pod's amount (issue 21)."""
    if pod.node_name and (node := inventory.node(pod.node_name)):
        return sum((node.gpu_equivalents(r, n, catalog) for r, n in pod.accelerators.items()), Fraction(0))
    return pending_equivalents(pod, pod_accelerator_type(pod, inventory, catalog), inventory, catalog)


def pending_equivalents(pod: PodView, accel_type: str, inventory: Inventory, catalog: Catalog) -> Fraction:
    """What a pending pod counts on `accel_type` (UNDECIDED: on whichever type it can land).

    A unit is a whole GPU, a MIG slice its compute fraction, and for a time-sliced pod (it asks
    for a shared resource, or its required affinity admits `-SHARED` nodes, as the webhook
    writes for time-sliced profiles) 1/replicas of a GPU with the replicas of the time-sliced
    nodes it can land on (the fewest, when they differ: never less than the bind will charge).
    The profile annotation is not read: an author could re-annotate a pending pod with another
    profile after admission; the nodes' sharing is what the bind charges anyway."""
    replicas = 1
    if asks_time_slices(pod):
        index = inventory.type_index(catalog)
        types = {accel_type} if accel_type else selectable_types(pod.required_terms, pod.node_selector, index)
        replicas = index.shared_replicas(types)
    found = catalog.get(accel_type)
    return sum(
        (n * unit_fraction(r, accel_type=found, replicas=replicas) for r, n in pod.accelerators.items()),
        Fraction(0),
    )


def asks_time_slices(pod: PodView) -> bool:
    """Whether the immutable spec says the pod takes time-slices: it asks for a shared resource,
    or its required affinity admits time-sliced (`-SHARED`, not MIG) nodes, which the webhook
    writes only for time-sliced profiles (accel.admission.affinity)."""
    if any(resource.endswith(SHARED_RESOURCE_SUFFIX) for resource in pod.accelerators):
        return True
    values = [v for term in pod.required_terms or () for _, op, vs in term if op == "In" for v in vs]
    return any(v.upper().endswith(SHARED_SUFFIX) and MIG_INFIX not in v.upper()
               for v in (*values, *pod.node_selector.values()))


def requested_gpu_equivalents(
    requests: Mapping[str, int], accel_type: str, profile: Profile | None, catalog: Catalog
) -> Fraction:
    """What accelerator `requests` not yet on a node would count as on `accel_type`: a time-sliced
    profile's units are 1/replicas of a GPU, MIG slices their compute fraction
    (accel.cluster.gpu_equivalents)."""
    replicas = (profile.replicas or 1) if profile and profile.sharing is ProfileSharing.TIME_SLICED else 1
    found = catalog.get(accel_type)
    return sum(
        (n * unit_fraction(r, accel_type=found, replicas=replicas) for r, n in requests.items()), Fraction(0)
    )


def team_usage(inventory: Inventory, *, catalog: Catalog, policy: Policy) -> dict[str, dict[str, Fraction]]:
    """team -> canonical type -> GPU-equivalents of bound and pending non-terminal pods."""
    usage: dict[str, dict[str, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    label = policy.settings.team_label
    queued = kueue_scope(policy)
    for pod in inventory.pods:
        team = inventory.team_of(pod.namespace, label)  # never the pod's own label (accel.admission.resolve)
        if not team or pod_is_queued(pod, queued, team):  # accel.policy.kueue rule 2: Kueue books queued pods
            continue
        usage[team][pod_accelerator_type(pod, inventory, catalog)] += pod_gpu_equivalents(
            pod, inventory, catalog, policy
        )
    return {team: dict(types) for team, types in usage.items()}
