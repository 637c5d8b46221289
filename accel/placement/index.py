"""The extender's per-generation cluster index, built incrementally from the previous generation.

A request must cost a few vectorised passes over its node names, so everything that depends
only on the cluster snapshot is computed here once per state generation: the device model of
every node, its *node class* (everything a verdict or a fragmentation score depends on) and its
*topology class* (full leaf/spine/zone paths + RDMA), as numpy columns indexed by node position.

Rules:
1. Class ids are interned in `Classes`, which lives as long as the `ExtenderCore`: a class id
   means the same thing in every generation, so caches keyed by class id (verdicts,
   fragmentation scores) stay valid across generation changes. `Classes` is reset (and the caches
   with it) only when it grows past CLASS_LIMIT, e.g. under heavy CPU-request churn.
2. A node is rebuilt only when its `NodeInventory` or the accelerator pods bound to it differ
   (by value) from the previous generation; otherwise its device model and class ids are reused.
   A pod event therefore costs O(nodes) cheap comparisons plus the rebuild of one or two nodes,
   not O(nodes) device models.
3. Position `len(names)` of every column is a sentinel for "not in this index" (class id -1).
4. The positions of the last RECENT_LISTS candidate lists are remembered (keyed by value) and
   carried to the next generation while the node list is unchanged (positions are the same).
   Filter also remembers the list it passed: kube-scheduler sends prioritize exactly those nodes
   when no other filter removed any.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import orjson

from accel.capacity.devices import NodeDevices, build_node_devices
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.job_intent import JobKey, job_key
from accel.cluster.pods import PodView
from accel.placement.columns import BoolColumn, IntColumn
from accel.placement.topology_rules import Paths, paths
from accel.policy.models import Policy

CLASS_LIMIT = 50_000
RECENT_LISTS = 8
UNKNOWN = -1

TopoKey = tuple[Paths, bool]


def class_key(node: NodeInventory, devices: NodeDevices) -> tuple[object, ...]:
    """Everything a verdict or a fragmentation score of this node depends on (rule 1)."""
    pools = tuple((p.resource, p.slots, p.capacity, p.used) for p in devices.pools.values())
    return (devices.gpu_type, node.ready, node.cordoned, pools, devices.cpu_left_milli // 1000)


@dataclass
class Classes:
    """Interned node classes and topology classes; ids are never reused until `reset` (rule 1)."""

    class_ids: dict[tuple[object, ...], int] = field(default_factory=dict)
    class_rep: list[tuple[NodeInventory, NodeDevices]] = field(default_factory=list)
    topo_ids: dict[TopoKey, int] = field(default_factory=dict)
    topo_rep: list[TopoKey] = field(default_factory=list)
    level_ids: dict[tuple[str | None, ...], int] = field(default_factory=dict)  # leaf/spine/zone path
    topo_levels: list[tuple[int, int, int]] = field(default_factory=list)  # tid -> level ids (-1 unknown)
    _topo_columns: tuple[IntColumn, BoolColumn] | None = None

    def intern(self, node: NodeInventory, devices: NodeDevices) -> int:
        key = class_key(node, devices)
        cid = self.class_ids.get(key)
        if cid is None:
            cid = self.class_ids[key] = len(self.class_rep)
            self.class_rep.append((node, devices))
        return cid

    def intern_topo(self, node: NodeInventory) -> int:
        topo = node.accelerators.topology
        key = (paths(topo), topo.rdma)
        tid = self.topo_ids.get(key)
        if tid is None:
            tid = self.topo_ids[key] = len(self.topo_rep)
            self.topo_rep.append(key)
            leaf, spine, zone = (self._level(p) for p in key[0])
            self.topo_levels.append((leaf, spine, zone))
            self._topo_columns = None
        return tid

    def _level(self, path: tuple[str | None, ...]) -> int:
        """Interned id of one full path; UNKNOWN when its last value is unknown (never matches)."""
        if path[-1] is None:
            return UNKNOWN
        return self.level_ids.setdefault(path, len(self.level_ids))

    def topo_columns(self) -> tuple[IntColumn, BoolColumn]:
        """(tid -> (leaf, spine, zone) level ids as an (n, 3) array, tid -> RDMA), cached."""
        if self._topo_columns is None or len(self._topo_columns[1]) != len(self.topo_rep):
            levels = np.array(self.topo_levels, dtype=np.intp).reshape(len(self.topo_levels), 3)
            rdma = np.array([rdma for _, rdma in self.topo_rep], dtype=bool)
            self._topo_columns = (levels, rdma)
        return self._topo_columns

    @property
    def full(self) -> bool:
        return len(self.class_rep) > CLASS_LIMIT or len(self.topo_rep) > CLASS_LIMIT


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node of one generation; reused as is while node and pods compare equal (rule 2)."""

    node: NodeInventory
    pods: tuple[PodView, ...]
    devices: NodeDevices
    cid: int
    tid: int


@dataclass(frozen=True, slots=True)
class JobPeers:
    """A job's pods bound in one generation: their uids, the topology class of each one on a known
    node, and how many sit on each known node."""

    uids: frozenset[str]
    tids: list[int]
    per_node: dict[str, int]


@dataclass
class ClusterIndex:
    """Everything precomputed for one state generation (see module docstring)."""

    generation: int
    policy: Policy
    classes: Classes
    records: dict[str, NodeRecord]
    names: tuple[str, ...]  # node names in position order
    position: dict[str, int]  # node name -> position in `names` and in the columns
    class_col: IntColumn  # position -> class id (sentinel UNKNOWN at len(names))
    topo_col: IntColumn  # position -> topology class id (sentinel UNKNOWN)
    pods_by_uid: dict[str, PodView] = field(default_factory=dict)
    bound_uids: frozenset[str] = frozenset()
    job_nodes: dict[JobKey, list[tuple[str, str]]] = field(default_factory=dict)  # job -> (uid, node)
    job_pods: dict[JobKey, int] = field(default_factory=dict)  # job -> pods seen, pending included
    # job -> uids of its pods kube-scheduler may place now: unbound, not gated, not being deleted
    job_waiting: dict[JobKey, frozenset[str]] = field(default_factory=dict)
    known_types: tuple[str, ...] = ()
    slots_of: dict[str, int] = field(default_factory=dict)
    rebuilt_nodes: int = 0  # how many nodes this generation had to rebuild (rule 2), for benchmarks
    recent: OrderedDict[bytes, IntColumn] = field(default_factory=OrderedDict)  # rule 4
    _jobs: dict[JobKey, JobPeers] = field(default_factory=dict)  # job_peers, filled on demand

    @property
    def nodes(self) -> dict[str, NodeInventory]:
        return {name: rec.node for name, rec in self.records.items()}

    def node(self, name: str) -> NodeInventory | None:
        rec = self.records.get(name)
        return rec.node if rec else None

    def devices(self, name: str) -> NodeDevices | None:
        rec = self.records.get(name)
        return rec.devices if rec else None

    def job_peers(self, job: JobKey) -> JobPeers:
        """The job's pods bound in this generation (shared: do not mutate), computed once per job."""
        found = self._jobs.get(job)
        if found is None:
            tids: list[int] = []
            per_node: dict[str, int] = {}
            uids: set[str] = set()
            for uid, name in self.job_nodes.get(job, ()):
                uids.add(uid)
                if (rec := self.records.get(name)) is not None:
                    tids.append(rec.tid)
                    per_node[name] = per_node.get(name, 0) + 1
            found = self._jobs[job] = JobPeers(frozenset(uids), tids, per_node)
        return found

    def positions(self, names: Sequence[str], count: int, key: bytes | None = None) -> IntColumn:
        """Position of each name (read-only); unknown names get the sentinel position len(self.names).

        kube-scheduler sends the same node lists again and again (its snapshot order), so the
        answers for the last RECENT_LISTS lists are kept, keyed by the list's JSON encoding (one
        C-speed encode and hash instead of one hash and dict lookup per name; rule 4). `key`, when
        given, must be a JSON encoding of `names` (e.g. the raw bytes the list was decoded from:
        JSON text determines its value, so equal keys still mean equal lists); a remembered bytes
        object has its hash cached, which saves the encode and the hash.
        """
        key = key if key is not None else list_key(names)
        if key is not None and (found := self.recent.get(key)) is not None:
            self.recent.move_to_end(key)
            return found
        found = np.fromiter(
            map(self.position.get, names, repeat(len(self.names))), dtype=np.intp, count=count
        )
        if key is not None:
            self.remember(key, found)
        return found

    def remember(self, key: bytes, positions: IntColumn) -> None:
        """Record the positions of a list (by `list_key`) the scheduler is likely to send (rule 4)."""
        positions.flags.writeable = False
        self.recent[key] = positions
        self.recent.move_to_end(key)
        while len(self.recent) > RECENT_LISTS:
            self.recent.popitem(last=False)


def list_key(names: Sequence[str]) -> bytes | None:
    """The JSON encoding of a list of names (equal lists, equal keys); None if it has no such form."""
    try:
        return orjson.dumps(names if isinstance(names, list) else list(names))
    except TypeError:
        return None


def _record(
    classes: Classes, node: NodeInventory, pods: tuple[PodView, ...], previous: NodeRecord | None
) -> tuple[NodeRecord, bool]:
    """(record, rebuilt?) for one node (rule 2)."""
    if previous is not None and previous.pods == pods and previous.node == node:
        return previous, False
    devices = build_node_devices(node, pods)
    return NodeRecord(node, pods, devices, classes.intern(node, devices), classes.intern_topo(node)), True


JobGroups = tuple[
    dict[str, list[PodView]],
    dict[JobKey, list[tuple[str, str]]],
    dict[JobKey, int],
    dict[JobKey, frozenset[str]],
]


def _group_pods(pods: Iterable[PodView]) -> JobGroups:
    """Pods by node, bound job pods by job, every job's pod count (pending ones included) and its
    pods waiting to be placed (`ClusterIndex.job_waiting`)."""
    by_node: dict[str, list[PodView]] = defaultdict(list)
    jobs: dict[JobKey, list[tuple[str, str]]] = defaultdict(list)
    counts: dict[JobKey, int] = defaultdict(int)
    waiting: dict[JobKey, set[str]] = defaultdict(set)
    for pod in pods:
        job = job_key(pod.namespace, pod.labels) if pod.labels else None
        if job:
            counts[job] += 1
        if pod.node_name:
            by_node[pod.node_name].append(pod)
            if job:
                jobs[job].append((pod.uid, pod.node_name))
        elif job and pod.uid and not pod.gated and not pod.deleting:
            waiting[job].add(pod.uid)
    return by_node, dict(jobs), dict(counts), {job: frozenset(uids) for job, uids in waiting.items()}


def build_index(
    generation: int,
    policy: Policy,
    inventory: Inventory,
    *,
    classes: Classes | None = None,
    previous: ClusterIndex | None = None,
) -> ClusterIndex:
    """The index of `inventory`, reusing unchanged nodes of `previous` (rule 2).

    `previous` must have been built with the same `classes` (its class ids are reused as is).
    """
    classes = classes if classes is not None else Classes()
    old = previous.records if previous is not None and previous.classes is classes else {}
    by_node, jobs, job_pods, job_waiting = _group_pods(inventory.pods)
    records: dict[str, NodeRecord] = {}
    rebuilt = 0
    empty: tuple[PodView, ...] = ()
    for node in inventory.nodes:
        pods = tuple(by_node[node.name]) if node.name in by_node else empty
        records[node.name], changed = _record(classes, node, pods, old.get(node.name))
        rebuilt += changed
    names = tuple(records)
    recent: OrderedDict[bytes, IntColumn] = OrderedDict()
    if previous is not None and previous.names == names:
        names, position, recent = previous.names, previous.position, previous.recent
    else:
        position = dict(zip(names, range(len(names)), strict=True))
    cids = [rec.cid for rec in records.values()]
    count = len(names) + 1
    index = ClusterIndex(
        generation=generation,
        policy=policy,
        classes=classes,
        records=records,
        names=names,
        position=position,
        class_col=np.fromiter([*cids, UNKNOWN], dtype=np.intp, count=count),
        topo_col=np.fromiter([*(r.tid for r in records.values()), UNKNOWN], dtype=np.intp, count=count),
        pods_by_uid={p.uid: p for p in inventory.pods if p.uid},
        bound_uids=frozenset(p.uid for p in inventory.pods if p.uid and p.node_name),
        job_nodes=jobs,
        job_pods=job_pods,
        job_waiting=job_waiting,
        rebuilt_nodes=rebuilt,
        recent=recent,
    )
    _summarise(index, set(cids))
    return index


def _summarise(index: ClusterIndex, cids: set[int]) -> None:
    """Known accelerator types and the slots per device of each resource, from the classes present."""
    types: set[str] = set()
    slots: dict[str, int] = {}
    for cid in cids:
        devices = index.classes.class_rep[cid][1]
        if devices.pools:
            types.add(devices.gpu_type)
        for pool in devices.pools.values():
            slots[pool.resource] = max(slots.get(pool.resource, 1), pool.slots)
    index.known_types = tuple(sorted(types))
    index.slots_of = slots
