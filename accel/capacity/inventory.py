"""The cluster inventory: per node what it has, what is used and what is free; per team what it uses.

Built from plain object dicts (Nodes, Pods, Namespaces as the API returns them) so the same code
serves a `--snapshot` file, a live watch cache and the simulator-driven demo.

Invariants:
1. Only bound, non-terminal pods allocate node resources; terminal pods free them at once.
2. Team usage counts bound AND pending non-terminal pods (quota is about what is asked for).
3. A node with GPUs in capacity but no labels appears with type `unknown`; nothing here raises on
   malformed objects (a bad object becomes an empty/unknown entry).
4. `build_inventory` reads every object it is given (snapshots, tests, the CLI);
   `IncrementalInventory` (the servers' watched state) gives the very same result at the cost of
   what changed since its last build (see its rules).
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

    # Both built on first use (a view nobody asks about a node costs nothing), or handed over by
    # `IncrementalInventory` from the previous inventory when they still hold (same nodes).
    _node_index: dict[str, NodeInventory] | None = PrivateAttr(default=None)
    _type_index: tuple[Catalog, TypeIndex] | None = PrivateAttr(default=None)

    @classmethod
    def assemble(
        cls,
        *,
        nodes: tuple[NodeInventory, ...],
        pods: tuple[PodView, ...],
        namespace_labels: dict[str, Mapping[str, str]],
        namespace_annotations: dict[str, Mapping[str, str]],
        deleted_pods: frozenset[str],
        node_index: dict[str, NodeInventory] | None = None,
        earlier: Inventory | None = None,
        same_hardware: bool = False,
    ) -> Inventory:
        """An inventory of parts that are already the right types (`IncrementalInventory`): taken
        as they are, not validated item by item (O(pods) in the validator, every generation).
        `node_index`: name -> node of `nodes`, never changed later; `earlier`: an inventory whose
        type index is reused when it has these very nodes, or `same_hardware`: the same node names
        with the same `accelerators` objects (so the same labels: an accelerators object is kept
        only while the node object's version is, accel.capacity.inventory.ParseCache.node). The
        index reads nothing else of a node (accel.capacity.pod_types.TypeIndex), so binding or
        deleting a pod, which changes only a node's allocation, no longer rebuilds it (O(nodes))."""
        inventory = cls.model_construct(
            nodes=nodes,
            pods=pods,
            namespace_labels=namespace_labels,
            namespace_annotations=namespace_annotations,
            deleted_pods=deleted_pods,
        )
        inventory._node_index = node_index
        if earlier is not None and (earlier.nodes is nodes or same_hardware):
            inventory._type_index = earlier._type_index
        return inventory

    def __eq__(self, other: object) -> bool:
        """Equal fields (the indexes are caches of them: built or not, they do not count)."""
        if not isinstance(other, Inventory):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # holds dicts: never hashable, as before

    def node(self, name: str) -> NodeInventory | None:
        return self.node_index().get(name)

    def node_index(self) -> Mapping[str, NodeInventory]:
        """Node name -> node (what `node` reads), built once; fetch it once for many look-ups."""
        index = self._node_index
        if index is None:
            index = self._node_index = {n.name: n for n in self.nodes}
        return index

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
    taints = tuple(t for t in spec.get("taints") or () if isinstance(t, Mapping))
    return NodeInventory(
        name=str(metadata.get("name") or ""),
        labels=labels,
        accelerators=accelerators,
        ready=_node_ready(status),
        cordoned=bool(spec.get("unschedulable")),
        taints=taints,
        cpu_allocatable_milli=_safe(parse_milli, (allocatable or capacity).get("cpu")),
        memory_allocatable_bytes=_safe(parse_bytes, (allocatable or capacity).get("memory")),
        **_allocation(bound),
    )


def _allocation(bound: Iterable[PodView]) -> dict[str, Any]:
    """The NodeInventory fields that `bound` (the node's bound, non-terminal pods) decide."""
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
    return {"allocated": dict(allocated), "cpu_requested_milli": cpu, "memory_requested_bytes": memory,
            "pod_keys": tuple(keys)}


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
    about 0.25 ms a node) and everything else read from the object are reused and just the
    allocation is recounted. Objects without a
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
            # the same node object: all but the allocation is as built (a recount, ~5x cheaper than
            # re-reading the object; the fields shared with the previous NodeInventory never change)
            node = entry.node.model_copy(update=_allocation(bound))
        else:
            node = build_node(obj, catalog, bound, policy)
        self._nodes[name] = _NodeEntry(version, catalog, topology, bound, node)
        return node

    def pod(self, obj: Mapping[str, Any]) -> PodView:
        key = _pod_version(obj)
        if not key[1]:  # no resourceVersion: never cached
            return parse_pod(obj)
        found = self._pods.get(key)
        if found is None:
            found = self._pods[key] = parse_pod(obj)
        return found

    def forget_node(self, name: str) -> None:
        """Drop the memo of a node that is gone."""
        self._nodes.pop(name, None)


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
    ns_labels, ns_annotations = _namespace_maps(namespaces)
    return Inventory(
        nodes=built,
        pods=tuple(p for p in live if p.wants_accelerators),
        namespace_labels=ns_labels,
        namespace_annotations=ns_annotations,
        deleted_pods=frozenset(deleted_pods),
    )


def _node_name(obj: Mapping[str, Any]) -> str:
    return str(_mapping(obj.get("metadata")).get("name") or "")


def _pod_version(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(uid or name, resourceVersion): the same pod object while this is the same (ParseCache's key)."""
    meta = _mapping(obj.get("metadata"))
    return str(meta.get("uid") or meta.get("name") or ""), str(meta.get("resourceVersion") or "")


@dataclass(slots=True)
class _TrackedPod:
    obj: Mapping[str, Any]  # the store's object the view was parsed from (or found unchanged in)
    version: tuple[str, str]
    view: PodView
    position: int  # its key's position in the store when parsed or last checked (rule 1)


def _insert_in_order(found: dict[str, PodView], key: str, view: PodView, order: Mapping[str, int]) -> None:
    """Put `view` under `key` in `found`, a dict kept in store order (`order`: key -> position); a
    key that is not the newest (a pod bound or revived in place) takes a re-sort."""
    if key in found or not found or order[next(reversed(found))] < order[key]:
        found[key] = view  # in place, or an append that keeps the order
        return
    found[key] = view
    items = sorted(found.items(), key=lambda item: order[item[0]])
    found.clear()
    found.update(items)


class IncrementalInventory:
    """The inventory of watched stores, kept change by change: a build costs O(objects changed
    since the last one), not O(all pods), and equals `build_inventory` of the stores exactly.

    Fed by the informers' change callbacks (`pod_changed`, `node_changed`, `namespace_changed`:
    the store key of every object added, modified or deleted, in the order the store applied
    them) and built from the stores themselves (`build`), so an object changed twice between
    builds is parsed once, from what the store holds at the build.

    Rules:
    1. Result identical to `build_inventory(stores)`: the same pods in the same (store) order,
       the same nodes, namespaces and deleted uids. Store order is mirrored by giving each key a
       position when the store first holds it (a dict appends a new key, keeps a replaced one in
       place, and forgets a deleted one); a relist replaces the store with the list's order, so
       after one the caller calls `resync` (the store's order is read again, O(pods) once).
    2. An unchanged pod keeps its PodView object (also across a relist: same uid and
       resourceVersion, same view); an unchanged node whose bound pods are the same objects keeps
       its NodeInventory object; unchanged namespaces keep their label/annotation maps.
    3. Nothing here trusts the callbacks blindly: the first build, and any build where the
       tracked pods or nodes do not number what the stores hold, reads the stores whole.
    """

    def __init__(self) -> None:
        self._order: dict[str, int] = {}  # pod key -> position in the store's order (rule 1)
        self._next_position = 0
        self._dirty_pods: set[str] = set()
        self._pods: dict[str, _TrackedPod] = {}
        # derived, each in store order: non-terminal pods asking for accelerators (Inventory.pods),
        # and per node name its bound non-terminal pods (they allocate its resources: invariant 1)
        self._accelerator_pods: dict[str, PodView] = {}
        self._bound: dict[str, dict[str, PodView]] = {}
        self._pods_tuple: tuple[PodView, ...] | None = ()
        self._dirty_nodes: set[str] = set()
        self._nodes: dict[str, NodeInventory] = {}  # store key -> node, sorted by node name
        self._node_memo = ParseCache()
        self._nodes_tuple: tuple[NodeInventory, ...] | None = ()
        self._node_index: dict[str, NodeInventory] | None = {}
        self._keys_are_names = True  # every key of `_nodes` is its node's name (False stays False)
        self._built: Inventory | None = None
        self._node_setting: tuple[Catalog | None, Any] = (None, None)  # (catalog, topology keys) built with
        self._namespaces_dirty = True
        self._namespace_maps: tuple[dict[str, Mapping[str, str]], dict[str, Mapping[str, str]]] = ({}, {})
        self._whole = True  # rule 3: read the stores whole at the next build
        # name -> node whose hardware (`accelerators`) the last build changed, None: gone
        self.hardware_changed: dict[str, NodeInventory | None] = {}

    # --- change feed (the informers' callbacks) -----------------------------------------------
    def pod_changed(self, key: str, deleted: bool) -> None:
        """The pods store added, replaced (`deleted` False) or removed (True) `key`."""
        if deleted:
            self._order.pop(key, None)
        elif key not in self._order:
            self._order[key] = self._next_position
            self._next_position += 1
        self._dirty_pods.add(key)

    def node_changed(self, key: str) -> None:
        self._dirty_nodes.add(key)

    def namespace_changed(self, key: str) -> None:
        self._namespaces_dirty = True

    def resync(self) -> None:
        """Read the stores whole at the next build (after a relist: rule 1)."""
        self._whole = True

    # --- build --------------------------------------------------------------------------------
    def build(
        self,
        nodes: Mapping[str, Mapping[str, Any]],
        pods: Mapping[str, Mapping[str, Any]],
        namespaces: Mapping[str, Mapping[str, Any]],
        *,
        catalog: Catalog,
        policy: Policy | None = None,
        deleted_pods: frozenset[str] = frozenset(),
    ) -> Inventory:
        """The inventory of the stores (keyed like the informers': `namespace/name`, or `name`),
        which must be the ones the change callbacks describe."""
        self.hardware_changed = {}
        if self._whole:
            self._read_whole(pods, nodes)
        else:
            self._update_pods(pods)
            if len(self._pods) != len(pods):  # rule 3: a change was never reported
                self._read_whole(pods, nodes)
        topology = _topology_keys(policy)
        if self._node_setting != (catalog, topology) or self._node_setting[0] is not catalog:
            self._dirty_nodes.update(nodes, self._nodes)  # another catalog/topology: every node again
            self._node_setting = (catalog, topology)
        self._update_nodes(nodes, catalog, policy)
        if len(self._nodes) != len(nodes):  # rule 3
            self._dirty_nodes.update(nodes, self._nodes)
            self._update_nodes(nodes, catalog, policy)
        if self._namespaces_dirty:
            self._namespace_maps = _namespace_maps(namespaces.values())
            self._namespaces_dirty = False
        if self._pods_tuple is None:
            self._pods_tuple = tuple(self._accelerator_pods.values())
        if self._nodes_tuple is None:
            self._nodes_tuple = tuple(self._nodes.values())
            # a copy (C speed): an inventory's index never changes. Its keys are the node names
            # unless a node's name is not its store key (a node without one): then it builds its own.
            self._node_index = dict(self._nodes) if self._keys_are_names else None
        self._built = Inventory.assemble(
            nodes=self._nodes_tuple,
            pods=self._pods_tuple,
            namespace_labels=self._namespace_maps[0],
            namespace_annotations=self._namespace_maps[1],
            deleted_pods=deleted_pods,
            node_index=self._node_index,
            earlier=self._built,
            same_hardware=not self.hardware_changed,
        )
        return self._built

    def _read_whole(self, pods: Mapping[str, Mapping[str, Any]], nodes: Mapping[str, Any]) -> None:
        """Rules 1 and 3: positions from the store's order, every pod checked (views kept where the
        object version is the same), derived maps rebuilt, every node checked."""
        self._order = {key: position for position, key in enumerate(pods)}
        self._next_position = len(self._order)
        self._dirty_pods.update(pods, self._pods)
        self._update_pods(pods, derive=False)
        self._accelerator_pods = {}
        self._bound = {}
        for key in self._order:  # store order: appends only
            self._place(key, self._pods[key].view)
        self._pods_tuple = None
        self._dirty_nodes.update(nodes, self._nodes)
        self._whole = False

    def _update_pods(self, pods: Mapping[str, Mapping[str, Any]], *, derive: bool = True) -> None:
        """Parse the dirty pods; `derive`: also move them in the derived maps (else the caller
        rebuilds those)."""
        dirty, self._dirty_pods = self._dirty_pods, set()
        present = []
        for key in dirty:  # the gone first: every key left in the derived maps has a position
            obj = pods.get(key)
            if obj is not None:
                present.append((key, obj))
            elif (gone := self._pods.pop(key, None)) is not None and derive:
                self._unplace(key, gone.view)
        present.sort(key=lambda item: self._order[item[0]])  # new pods append to the derived maps in order
        for key, obj in present:
            tracked = self._pods.get(key)
            position = self._order[key]
            moved = tracked is not None and tracked.position != position
            if moved and tracked is not None and derive:
                self._unplace(key, tracked.view)  # deleted and added again: it goes to its new place
            if tracked is not None and tracked.obj is not obj:
                version = _pod_version(obj)
                if version[1] and tracked.version == version:
                    tracked.obj = obj  # the same object version (a relist's copy): the same view (rule 2)
            if tracked is not None and tracked.obj is obj:
                tracked.position = position
                if moved and derive:
                    self._place(key, tracked.view)
                continue
            view = parse_pod(obj)
            self._pods[key] = _TrackedPod(obj, _pod_version(obj), view, position)
            if derive:
                if tracked is not None and not moved:
                    self._unplace(key, tracked.view, keep=view)
                self._place(key, view)

    def _place(self, key: str, view: PodView) -> None:
        """Add `view` to the derived maps it belongs in (store order kept)."""
        if view.terminal:
            return
        if view.wants_accelerators:
            _insert_in_order(self._accelerator_pods, key, view, self._order)
            self._pods_tuple = None
        if view.node_name:
            _insert_in_order(self._bound.setdefault(view.node_name, {}), key, view, self._order)
            self._dirty_nodes.add(view.node_name)

    def _unplace(self, key: str, old: PodView, keep: PodView | None = None) -> None:
        """Take `old` out of the derived maps `keep` (its successor) does not stay in under the same
        key (staying, it is replaced in place by `_place`: its position is unchanged)."""
        if old.terminal:
            return
        stays = keep is not None and not keep.terminal
        if old.wants_accelerators and not (stays and keep is not None and keep.wants_accelerators):
            del self._accelerator_pods[key]
            self._pods_tuple = None
        if old.node_name and not (stays and keep is not None and keep.node_name == old.node_name):
            bound = self._bound[old.node_name]
            del bound[key]
            if not bound:
                del self._bound[old.node_name]
            self._dirty_nodes.add(old.node_name)

    def _update_nodes(self, nodes: Mapping[str, Mapping[str, Any]], catalog: Catalog,
                      policy: Policy | None) -> None:
        dirty, self._dirty_nodes = self._dirty_nodes, set()
        added = False
        for key in dirty:
            obj = nodes.get(key)
            if obj is None:
                if (gone := self._nodes.pop(key, None)) is not None:
                    self._node_memo.forget_node(key)
                    self._nodes_tuple = None
                    self.hardware_changed[gone.name] = None
                continue
            bound = self._bound.get(_node_name(obj))
            node = self._node_memo.node(obj, catalog, tuple(bound.values()) if bound else (), policy)
            previous = self._nodes.get(key)
            if previous is node:
                continue
            added = added or previous is None
            if previous is None or previous.accelerators is not node.accelerators:
                self.hardware_changed[node.name] = node
            self._nodes[key] = node
            self._keys_are_names = self._keys_are_names and key == node.name
            self._nodes_tuple = None
        if added:  # keep the map sorted by name, as build_inventory sorts (a replaced key keeps its place)
            self._nodes = dict(sorted(self._nodes.items(), key=lambda item: item[1].name))


def _namespace_maps(
    namespaces: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, Mapping[str, str]], dict[str, Mapping[str, str]]]:
    """(name -> labels, name -> annotations) of namespace objects."""
    ns_labels: dict[str, Mapping[str, str]] = {}
    ns_annotations: dict[str, Mapping[str, str]] = {}
    for ns in namespaces:
        meta = _mapping(ns.get("metadata"))
        name = str(meta.get("name") or "")
        ns_labels[name] = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
        ns_annotations[name] = {str(k): str(v) for k, v in _mapping(meta.get("annotations")).items()}
    return ns_labels, ns_annotations


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
