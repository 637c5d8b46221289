"""The extender's decision engine: filter, prioritize and bind plans over one cluster snapshot.

Per state generation it precomputes a `ClusterIndex` (device model per node, node classes, job
placements), so a request costs a few dict lookups per node; verdicts and fragmentation scores
are memoised per (node class, request) until the generation changes. Nodes with assumed binds
are the only ones recomputed per request.

Rules:
1. Every pod seen at filter/prioritize is counted once (by uid) in the learned workload
   histogram; the compiled mix refreshes after 1, 2, 4, ... observations, then every
   `refresh_every`, so memoised scores stay valid between refreshes (same as the simulator).
2. Assumed binds (accel.devices rule 3) are pruned on every call: expired, or shown bound by the
   watch. A node with assumptions is evaluated on its model *plus* those assignments.
3. The engine is pure: the caller passes the snapshot and `now`; IO (binding) stays outside.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from accel.devices import (
    AssumedBinds,
    Assumption,
    DeviceError,
    NodeDevices,
    build_node_devices,
    format_assignment,
)
from accel.filtering import PodRequest, Verdict, check_node, resolve_request
from accel.fragmentation import TypicalMix, WorkloadHistogram
from accel.inventory import Inventory, NodeInventory
from accel.pods import DEVICES_ANNOTATION, TYPE_ANNOTATION, PodView
from accel.policy import Policy
from accel.scoring import (
    ShapedRequest,
    Strategy,
    choose_assignment,
    clamp,
    fragmentation_raw,
    normalise,
    pod_shape,
    preference_raw,
)
from accel.topology_score import JobKey, Paths, job_key, paths, raw_from_groups

SEEN_UIDS_LIMIT = 100_000
POD_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    passed: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


@dataclass(frozen=True, slots=True)
class BindPlan:
    pod: PodView
    node: str
    annotations: dict[str, str]
    assumption: Assumption


class BindRefused(Exception):
    """The bind cannot be done as asked; the message says why (sent back as `Error`)."""


def _class_key(node: NodeInventory, devices: NodeDevices) -> tuple[object, ...]:
    pools = tuple((p.resource, p.slots, p.capacity, p.used) for p in devices.pools.values())
    return (devices.gpu_type, node.ready, node.cordoned, pools, devices.cpu_left_milli // 1000)


@dataclass
class ClusterIndex:
    """Everything precomputed for one state generation (see module docstring)."""

    generation: int
    policy: Policy
    nodes: dict[str, NodeInventory]
    devices: dict[str, NodeDevices]
    class_of: dict[str, int] = field(default_factory=dict)
    class_rep: list[tuple[NodeInventory, NodeDevices]] = field(default_factory=list)
    class_ids: dict[tuple[object, ...], int] = field(default_factory=dict)
    topo_of: dict[str, int] = field(default_factory=dict)
    topo_rep: list[tuple[Paths, bool]] = field(default_factory=list)
    key_of: dict[str, tuple[int, int]] = field(default_factory=dict)  # node -> (class, topo class)
    pods_by_uid: dict[str, PodView] = field(default_factory=dict)
    bound_uids: frozenset[str] = frozenset()
    job_nodes: dict[JobKey, list[tuple[str, str]]] = field(default_factory=dict)  # job -> (uid, node)
    known_types: tuple[str, ...] = ()
    slots_of: dict[str, int] = field(default_factory=dict)

    def intern(self, node: NodeInventory, devices: NodeDevices) -> int:
        key = _class_key(node, devices)
        cid = self.class_ids.get(key)
        if cid is None:
            cid = self.class_ids[key] = len(self.class_rep)
            self.class_rep.append((node, devices))
        return cid


def build_index(generation: int, policy: Policy, inventory: Inventory) -> ClusterIndex:
    """Precompute the per-generation index (O(nodes + accelerator pods))."""
    by_node: dict[str, list[PodView]] = defaultdict(list)
    jobs: dict[JobKey, list[tuple[str, str]]] = defaultdict(list)
    for pod in inventory.pods:
        if pod.node_name:
            by_node[pod.node_name].append(pod)
            if job := job_key(pod.namespace, pod.labels):
                jobs[job].append((pod.uid, pod.node_name))
    nodes = {n.name: n for n in inventory.nodes}
    devices = {name: build_node_devices(n, by_node.get(name, ())) for name, n in nodes.items()}
    index = ClusterIndex(generation, policy, nodes, devices, job_nodes=dict(jobs))
    topo_ids: dict[tuple[object, ...], int] = {}
    slots: dict[str, int] = {}
    for name, node in nodes.items():
        index.class_of[name] = index.intern(node, devices[name])
        topo = node.accelerators.topology
        tkey = (paths(topo), topo.rdma)
        if tkey not in topo_ids:
            topo_ids[tkey] = len(index.topo_rep)
            index.topo_rep.append(tkey)
        index.topo_of[name] = topo_ids[tkey]
        index.key_of[name] = (index.class_of[name], index.topo_of[name])
        for pool in devices[name].pools.values():
            slots[pool.resource] = max(slots.get(pool.resource, 1), pool.slots)
    index.pods_by_uid = {p.uid: p for p in inventory.pods if p.uid}
    index.bound_uids = frozenset(p.uid for p in inventory.pods if p.uid and p.node_name)
    index.known_types = tuple(sorted({d.gpu_type for d in devices.values() if d.pools}))
    index.slots_of = slots
    return index


class ExtenderCore:
    """Learned workload, assumed binds and per-generation caches; one per extender process."""

    def __init__(self, *, half_life: float = 2000.0, refresh_every: int = 256) -> None:
        self.histogram = WorkloadHistogram(half_life=half_life)
        self.mix = TypicalMix(())
        self.mix_version = 0
        self.refresh_every = refresh_every
        self._next_refresh = 1
        self.assumptions = AssumedBinds()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pods: OrderedDict[str, PodView] = OrderedDict()
        self._index: ClusterIndex | None = None
        self._verdicts: dict[tuple[int, tuple[object, ...]], Verdict] = {}
        self._frag: dict[tuple[int, ShapedRequest, int, str], float] = {}

    # ---- snapshot and bookkeeping ------------------------------------------------------------
    def index(self, generation: int, policy: Policy, inventory: Inventory) -> ClusterIndex:
        if self._index is None or self._index.generation != generation or self._index.policy is not policy:
            self._index = build_index(generation, policy, inventory)
            self._verdicts.clear()
            self._frag.clear()
        return self._index

    def request(self, pod: PodView, index: ClusterIndex, now: float) -> PodRequest:
        """Resolve the pod, remember it for bind, count it once (rule 1), prune assumptions."""
        self.assumptions.prune(now, index.bound_uids)
        req = resolve_request(pod, index.policy)
        if pod.uid:
            self._pods[pod.uid] = pod
            self._pods.move_to_end(pod.uid)
            while len(self._pods) > POD_CACHE_LIMIT:
                self._pods.popitem(last=False)
            if req.wants_accelerators and pod.uid not in self._seen:
                self._observe(req, index)
        return req

    def _observe(self, req: PodRequest, index: ClusterIndex) -> None:
        self._seen[req.pod.uid] = None
        while len(self._seen) > SEEN_UIDS_LIMIT:
            self._seen.popitem(last=False)
        shaped = self.shaped(req, index)
        self.histogram.observe(pod_shape(shaped, slots=index.slots_of.get(shaped.resource, 1)))
        if self.histogram.observations >= self._next_refresh:
            self.mix = self.histogram.mix()
            self.mix_version += 1
            self._next_refresh += min(self._next_refresh, self.refresh_every)

    def shaped(self, req: PodRequest, index: ClusterIndex) -> ShapedRequest:
        resource, units = max(req.resources, key=lambda ru: ru[1]) if req.resources else ("", 0)
        types = req.allowed_types if req.allowed_types is not None else index.known_types
        return ShapedRequest(resource=resource, units=units, cpu_milli=req.pod.cpu_milli, types=types)

    def effective(self, index: ClusterIndex, name: str, *, exclude_uid: str = "") -> NodeDevices | None:
        """The node's devices with its assumed binds applied (rule 2)."""
        devices = index.devices.get(name)
        if devices is None:
            return None
        for item in self.assumptions.on_node(name):
            if item.uid != exclude_uid:
                try:
                    devices = devices.with_assignment(item.assignment)
                except DeviceError:
                    continue  # the watch moved on; the assumption no longer fits and will expire
        return devices

    # ---- filter ------------------------------------------------------------------------------
    def filter(self, index: ClusterIndex, req: PodRequest, names: Sequence[str]) -> FilterOutcome:
        ids = [c for c, _ in self._keys(index, names)]
        sig = req.signature
        verdicts: dict[int, Verdict] = {}
        for cid in set(ids):
            key = (cid, sig)
            verdict = self._verdicts.get(key)
            if verdict is None:
                node, devices = index.class_rep[cid] if cid >= 0 else (None, None)
                verdict = check_node(req, "", node, devices) if cid >= 0 else Verdict(False)
                self._verdicts[key] = verdict
            verdicts[cid] = verdict
        passed: list[str] = []
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        for name, cid in zip(names, ids, strict=True):
            verdict = verdicts[cid]
            if verdict.ok:
                passed.append(name)
            elif cid < 0:
                failed[name] = check_node(req, name, None, None).reason
            else:
                (unresolvable if verdict.unresolvable else failed)[name] = verdict.reason
        return FilterOutcome(passed, failed, unresolvable)

    # ---- prioritize --------------------------------------------------------------------------
    def _frag_raw(self, index: ClusterIndex, cid: int, shaped: ShapedRequest, strategy: Strategy) -> float:
        key = (cid, shaped, self.mix_version, strategy)
        value = self._frag.get(key)
        if value is None:
            value = fragmentation_raw(index.class_rep[cid][1], shaped, self.mix, strategy=strategy)[0]
            self._frag[key] = value
        return value

    def _peers(self, index: ClusterIndex, req: PodRequest) -> tuple[dict[Paths, int], dict[str, int]]:
        """Placed peers of the pod's job: count per topology path, and per node."""
        if req.job is None:
            return {}, {}
        uid = req.pod.uid
        placed = [n for u, n in index.job_nodes.get(req.job, ()) if u != uid]
        placed += [a.node for a in self.assumptions.by_uid.values() if a.job == req.job and a.uid != uid]
        groups: dict[Paths, int] = {}
        per_node: dict[str, int] = {}
        for name in placed:
            tid = index.topo_of.get(name)
            if tid is not None:
                key = index.topo_rep[tid][0]
                groups[key] = groups.get(key, 0) + 1
                per_node[name] = per_node.get(name, 0) + 1
        return groups, per_node

    def _keys(self, index: ClusterIndex, names: Sequence[str]) -> list[tuple[int, int]]:
        """(class, topo class) per name; (-1, -1) = unknown node; assumed-on nodes re-interned."""
        unknown = (-1, -1)
        keys = [index.key_of.get(n, unknown) for n in names]
        dirty = self.assumptions.nodes()
        if dirty:
            for i, name in enumerate(names):
                if name in dirty and (devices := self.effective(index, name)) is not None:
                    keys[i] = (index.intern(index.nodes[name], devices), keys[i][1])
        return keys

    def prioritize(self, index: ClusterIndex, req: PodRequest, names: Sequence[str]) -> list[tuple[str, int]]:
        """(host, 0..10) for every candidate, in the order given; unknown nodes get 0."""
        settings = index.policy.settings.scoring
        keys = self._keys(index, names)
        distinct = set(keys)
        distinct.discard((-1, -1))
        classes = {c for c, _ in distinct}
        shaped = self.shaped(req, index)
        pref = normalise(
            {c: preference_raw(index.class_rep[c][1].gpu_type, req.profile_types) for c in classes}
        )
        frag_raw = (
            {c: self._frag_raw(index, c, shaped, settings.strategy) for c in classes} if shaped.units else {}
        )
        frag = normalise(frag_raw)
        groups, per_node = self._peers(index, req)
        topo_raw: dict[object, float] = {}
        if req.job is not None:
            for tid in {t for _, t in distinct}:
                node_paths, rdma = index.topo_rep[tid]
                topo_raw[tid] = raw_from_groups(node_paths, rdma, groups, in_job=True)
            for name, count in per_node.items():
                if (peer_tid := index.topo_of.get(name)) is not None:
                    node_paths, rdma = index.topo_rep[peer_tid]
                    topo_raw[name] = raw_from_groups(node_paths, rdma, groups, same_node=count, in_job=True)
        topo = normalise(topo_raw)
        w = settings.weights
        total = w.preference + w.fragmentation + w.topology
        # combine() inlined: same weighted mean, split into a class part and a topology part
        class_part = {c: w.preference * pref[c] + w.fragmentation * frag.get(c, 0.0) for c in classes}
        topo_part = {k: w.topology * v for k, v in topo.items()}

        def score(cid: int, tkey: object) -> int:
            return clamp((class_part[cid] + topo_part.get(tkey, 0.0)) / total) if total > 0 else 0

        by_key = {(c, t): score(c, t) for c, t in distinct}
        by_key[(-1, -1)] = 0
        if not per_node:
            return [(name, by_key[k]) for name, k in zip(names, keys, strict=True)]
        near = {n: score(k[0], n) for n, k in zip(names, keys, strict=True) if n in per_node and k[0] >= 0}
        return [(n, near[n]) if n in near else (n, by_key[k]) for n, k in zip(names, keys, strict=True)]

    # ---- bind --------------------------------------------------------------------------------
    def plan_bind(
        self, index: ClusterIndex, *, namespace: str, name: str, uid: str, node: str, now: float, ttl: float
    ) -> BindPlan:
        """Pick devices for the pod on `node` and the annotations to write; BindRefused if it cannot."""
        self.assumptions.prune(now, index.bound_uids)
        pod = self._pods.get(uid) or index.pods_by_uid.get(uid)
        if pod is None or (pod.namespace, pod.name) != (namespace, name):
            raise BindRefused(
                f"accel: pod {namespace}/{name} (uid {uid}) is not known to the extender yet; retry"
            )
        req = resolve_request(pod, index.policy)
        devices = self.effective(index, node, exclude_uid=uid)
        verdict = check_node(req, node, index.nodes.get(node), devices)
        if not verdict.ok or devices is None:
            raise BindRefused(f"accel: cannot bind {namespace}/{name} to {node}: {verdict.reason}")
        annotations: dict[str, str] = {}
        assignment: dict[str, tuple[int, ...]] = {}
        if req.wants_accelerators:
            try:
                assignment = choose_assignment(
                    devices,
                    dict(req.resources),
                    self.shaped(req, index),
                    self.mix,
                    strategy=index.policy.settings.scoring.strategy,
                )
            except DeviceError as exc:
                raise BindRefused(f"accel: cannot bind {namespace}/{name} to {node}: {exc}") from None
            annotations = {
                TYPE_ANNOTATION: devices.gpu_type,
                DEVICES_ANNOTATION: format_assignment(assignment),
            }
        expires = now + ttl if math.isfinite(ttl) else math.inf
        assumption = Assumption(uid, pod.key, node, assignment, expires, req.job)
        return BindPlan(pod, node, annotations, assumption)
