"""The extender's state over cluster snapshots: learned workload, assumed binds, per-class caches.

`ExtenderState` is the base `accel.placement.core.ExtenderCore` is built on: it keeps the
`accel.placement.index.ClusterIndex` of the current generation (rebuilt incrementally), the pods
seen (for bind), the learned workload histogram and mix, the assumed binds, and the per-class memos
the filter (accel.placement.filter) and prioritize (accel.placement.prioritize) steps fill.

Rules:
1. Every pod seen at filter/prioritize is counted once (by uid) in the learned workload
   histogram; the compiled mix refreshes after 1, 2, 4, ... observations, then every
   `refresh_every`, so memoised scores stay valid between refreshes (same as the simulator).
2. Assumed binds (accel.capacity.devices rule 3) are pruned on every call: expired, or shown bound by the
   watch. A node with assumptions is evaluated on its model *plus* those assignments.
3. Job holds: when a pod of a multi-pod job is bound and the job has pods left, the leaf it went
   to is held for them until `jobHoldTTLSeconds` pass (on the caller's clock) or the job has no
   pods left to place. A node of a held leaf is *held* for another pod when taking that pod
   would leave the leaf unable to fit the job's remaining pods; prioritize scores it down
   (accel.placement.score rule 3), it is never filtered out.
   The job's size is the author's word (labels and annotations, accel.cluster.job_intent), so the
   pods left to hold for are capped by what can still come (`JobQuota`, issue 21): the job's
   pods that already exist unplaced and may be scheduled (not gated), plus as many more of this
   pod's shape as the team's quota still admits (type line after this bind and "*" line;
   Kueue-queued pods: none more, Kueue admits a pod group whole and ungates it then). A forged
   size therefore holds no more than the team could take by creating pods itself. Without a
   team quota line the declared size stands (1..4096, and a leaf that cannot fit the rest is not
   held at all).
4. Everything here (learned mix, assumed binds, job holds, caches) is per process. That is sound because the
   scheduler talks to exactly one extender replica: the manifests pin it (one replica, Service
   `sessionAffinity: ClientIP`). Two replicas would each assume only their own binds.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from accel.capacity.devices import AssumedBinds, DeviceError, NodeDevices
from accel.capacity.inventory import Inventory
from accel.cluster.catalog import Catalog
from accel.cluster.job_intent import JobKey, job_intent
from accel.cluster.pods import PodView
from accel.placement.columns import BoolColumn, IntColumn
from accel.placement.filter_columns import FilterColumns
from accel.placement.filter_rules import PodRequest, Verdict, resolve_request
from accel.placement.index import Classes, ClusterIndex, build_index
from accel.placement.score import Combined
from accel.placement.score_rules import ShapedRequest, cluster_context, pod_shape
from accel.placement.shapes import ClusterContext
from accel.placement.topology import JobTopology
from accel.placement.workload_mix import TypicalMix, WorkloadHistogram
from accel.policy.models import ALL_TYPES, Policy, Team
from accel.quota.rules import limit_of

SEEN_UIDS_LIMIT = 100_000
POD_CACHE_LIMIT = 10_000
FILTER_MEMO_LIMIT = 16  # (candidate list, pod signature) filter decisions kept as columns
MEMO_LIMIT = 200_000  # verdict / fragmentation memo entries before they are dropped and refilled
BREAKDOWNS_KEPT = 64  # pods whose last prioritize breakdown is kept for bind's explanation (6 floats per
# candidate each: about 15 MB at 5,000 nodes; kube-scheduler binds a pod right after scoring it)
HOLDS_LIMIT = 10_000
# An assumed bind whose pod the watch has not shown this long after the bind was deleted before the
# watch saw it: its devices are freed then, not at the TTL (AssumedBinds.drop_unseen).
UNSEEN_BIND_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class JobHold:
    """Rule 3: a leaf (full path) held for a job's remaining pods of one shape until `expires`."""

    job: JobKey
    leaf: tuple[str | None, ...]
    resource: str
    units: int
    size: int
    expires: float


@dataclass(frozen=True, slots=True)
class JobQuota:
    """Rule 3's cap on a hold, as the caller sees the pod's team now: `team` (None: no quota
    applies), its `usage` per type (bound and pending pods, this one included, as the watch shows
    them), the type this pod is `charged` as and its `amount` (what each more pod of its shape is
    charged at admission), and whether Kueue books it (`queued`)."""

    team: Team | None
    usage: Mapping[str, Fraction]
    charged: str
    amount: Fraction
    queued: bool = False


def pods_quota_admits(quota: JobQuota, node_type: str) -> int | None:
    """How many more pods of `quota.amount` the team's quota admits once this pod is bound on
    `node_type` (the type line then holds it too); None when no quota line limits them."""
    if quota.queued:
        return 0  # Kueue admits a pod group whole: every pod it will place exists already
    if quota.team is None or quota.amount <= 0:
        return None
    fits: int | None = None
    for key in (node_type, ALL_TYPES):
        limit = limit_of(quota.team, key)
        if limit is None:
            continue
        if key == ALL_TYPES:
            used = sum(quota.usage.values(), Fraction(0))
        else:
            moved = quota.amount if quota.charged != node_type else Fraction(0)
            used = quota.usage.get(key, Fraction(0)) + moved
        room = max(0, math.floor((limit - used) / quota.amount))
        fits = room if fits is None else min(fits, room)
    return fits


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One prioritize call's candidates and their combined scores, kept for bind (explanations)."""

    names: Sequence[str]  # the request's own list, kept as is (never mutated)
    combined: Combined


class ExtenderState:
    """What the filter, prioritize and bind steps share: snapshot index, learned mix, assumed binds,
    caches."""

    def __init__(
        self,
        *,
        half_life: float = 2000.0,
        refresh_every: int = 256,
        filter_memo_limit: int = FILTER_MEMO_LIMIT,
    ) -> None:
        """`filter_memo_limit`: filter decisions kept for reuse (see `filter_columns`; 0: none)."""
        self.filter_memo_limit = filter_memo_limit
        self.histogram = WorkloadHistogram(half_life=half_life)
        self.mix = TypicalMix(())
        self.mix_version = 0
        self.refresh_every = refresh_every
        self._next_refresh = 1
        self.assumptions = AssumedBinds()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.pods_seen: OrderedDict[str, PodView] = OrderedDict()
        self._index: ClusterIndex | None = None
        self.classes = Classes()
        self.verdicts: dict[tuple[int, tuple[object, ...]], Verdict] = {}
        self.frag_memo: dict[tuple[int, ShapedRequest, int, str], float] = {}
        self.topology = JobTopology()
        self.filter_memo: OrderedDict[tuple[int, tuple[object, ...]], tuple[Classes, FilterColumns]] = (
            OrderedDict()
        )
        self.context: ClusterContext | None = None  # device share per class, for the scarcity term
        self.holds: dict[JobKey, JobHold] = {}  # rule 3
        self.now = 0.0  # the caller's clock at the last request (holds expire on it)
        self.prices: Mapping[str, float] = {}  # list price per GPU-hour by type (scarcity)
        self.tflops: Mapping[str, float] = {}  # dense 16-bit TFLOPS by type (scarcity)
        self._prices_of: Catalog | None = None
        self._free_gpus: tuple[ClusterIndex, dict[str, float]] | None = None
        self.breakdowns: OrderedDict[str, Breakdown] = OrderedDict()

    # ---- snapshot and bookkeeping ------------------------------------------------------------
    def index(self, generation: int, policy: Policy, inventory: Inventory) -> ClusterIndex:
        """The index of this generation, rebuilt incrementally from the last one when it changed."""
        if self._index is None or self._index.generation != generation or self._index.policy is not policy:
            if self.classes.full:
                self.classes, self._index = Classes(), None
                self.verdicts.clear()
                self.frag_memo.clear()
            previous = self._index
            self._index = build_index(generation, policy, inventory, classes=self.classes, previous=previous)
            if previous is not None:
                # Pods the watch showed before and no longer shows (finished, failed, deleted) free
                # their devices now, not when their assumption's TTL runs out.
                self.assumptions.drop(previous.pods_by_uid.keys() - self._index.pods_by_uid.keys())
            # So do pods the watch showed deleted although no index built here ever held them: the
            # index is built on requests, and a pod bound and deleted between two requests is in none.
            # Its devices stayed assumed for UNSEEN_BIND_GRACE_S, and kube-scheduler, told "no room"
            # meanwhile, left the next pod pending until an unrelated cluster event (found on kube-local).
            self.assumptions.drop(inventory.deleted_pods)
            self._refresh_context(self._index)
        return self._index

    def _refresh_context(self, index: ClusterIndex) -> None:
        """The scorer's cluster context (device share per class; static inventory). Counted per
        node class with one bincount, so it costs O(classes) per generation; the fragmentation
        memo is only dropped when the shares really changed (nodes added or removed)."""
        counts = np.bincount(index.class_col[:-1], minlength=len(self.classes.class_rep))
        context = cluster_context(
            [(int(n), self.classes.class_rep[c][1]) for c, n in enumerate(counts.tolist()) if n]
        )
        if context != self.context:
            self.context = context
            self.frag_memo.clear()

    def request(self, pod: PodView, index: ClusterIndex, now: float) -> PodRequest:
        """Resolve the pod, remember it for bind, count it once (rule 1), prune assumptions and holds."""
        self.assumptions.prune(now, index.bound_uids)
        self.assumptions.drop_unseen(now, index.pods_by_uid.keys(), UNSEEN_BIND_GRACE_S)
        self.now = now
        if self.holds:
            self.holds = {job: h for job, h in self.holds.items() if h.expires > now}
        req = resolve_request(pod, index.policy)
        if pod.uid:
            self.pods_seen[pod.uid] = pod
            self.pods_seen.move_to_end(pod.uid)
            while len(self.pods_seen) > POD_CACHE_LIMIT:
                self.pods_seen.popitem(last=False)
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
        devices = index.devices(name)
        if devices is None:
            return None
        for item in self.assumptions.on_node(name):
            if item.uid != exclude_uid:
                try:
                    devices = devices.with_assignment(item.assignment)
                except DeviceError:
                    continue  # the watch moved on; the assumption no longer fits and will expire
        return devices

    def columns(
        self, index: ClusterIndex, names: Sequence[str], key: bytes | None
    ) -> tuple[IntColumn, IntColumn, IntColumn]:
        """(position, class id, topology class id) per name; nodes with assumed binds re-classed.
        `key`: a JSON encoding of `names`, if the caller has one (see ClusterIndex.positions)."""
        pos = index.positions(names, len(names), key)
        class_col = index.class_col
        dirty = self.assumptions.nodes()
        if dirty:
            class_col = class_col.copy()
            for name in dirty:
                at = index.position.get(name)
                if at is not None and (devices := self.effective(index, name)) is not None:
                    class_col[at] = self.classes.intern(index.records[name].node, devices)
        return pos, class_col[pos], index.topo_col[pos]

    # ---- scarcity and jobs ----------------------------------------------------------------------
    def use_catalog(self, catalog: Catalog) -> None:
        """List prices and throughput by type, for the scarcity component (kept until the catalog changes)."""
        if catalog is not self._prices_of:
            self._prices_of = catalog
            self.prices = {t.name: p for t in catalog if (p := t.price_per_gpu_hour) is not None}
            self.tflops = {t.name: f for t in catalog if (f := t.dense_tflops) is not None}

    def free_gpus(self, index: ClusterIndex) -> dict[str, float]:
        """Free GPUs (whole-device equivalents, every pool) per type in this generation."""
        if self._free_gpus is None or self._free_gpus[0] is not index:
            counts = np.bincount(index.class_col[:-1], minlength=len(self.classes.class_rep))
            free: dict[str, float] = {}
            for cid, nodes in enumerate(counts.tolist()):
                if nodes:
                    devices = self.classes.class_rep[cid][1]
                    milli = sum(sum(pool.free_milli()) for pool in devices.pools.values())
                    free[devices.gpu_type] = free.get(devices.gpu_type, 0.0) + nodes * milli / 1000
            self._free_gpus = (index, free)
        return self._free_gpus[1]

    def job_placed(self, index: ClusterIndex, job: JobKey, *, except_uid: str = "") -> int:
        """Pods of `job` bound in this generation or assumed bound, `except_uid` left out."""
        bound = {u for u, _ in index.job_nodes.get(job, ()) if u != except_uid}
        bound |= {a.uid for a in self.assumptions.by_uid.values() if a.job == job and a.uid != except_uid}
        return len(bound)

    def job_size(self, index: ClusterIndex, req: PodRequest) -> int:
        """The job's size: declared (accel.cluster.job_intent rule 2) or the pods seen, whichever is
        larger."""
        if req.job is None:
            return 1
        declared = job_intent(req.pod.labels, req.pod.annotations).size
        return max(declared, index.job_pods.get(req.job, 0), 1)

    def job_need(self, index: ClusterIndex, req: PodRequest) -> int:
        """Pods of the pod's job still to place, this one included."""
        if req.job is None:
            return 1
        return max(1, self.job_size(index, req) - self.job_placed(index, req.job, except_uid=req.pod.uid))

    def job_unplaced(self, index: ClusterIndex, req: PodRequest) -> int:
        """The job's other pods kube-scheduler may place now (`ClusterIndex.job_waiting`), not yet
        assumed bound: pods gated by Kueue (or anyone) until admitted are not counted, so pods
        made only to be counted, never admitted, hold nothing."""
        if req.job is None:
            return 0
        waiting = index.job_waiting.get(req.job, frozenset())
        assumed = {a.uid for a in self.assumptions.by_uid.values() if a.job == req.job}
        return len(waiting - assumed - {req.pod.uid})

    def hold_after_bind(
        self, index: ClusterIndex, req: PodRequest, node: str, now: float,
        quota: Callable[[], JobQuota] | None = None,
    ) -> JobHold | None:
        """Rule 3: the hold to record when `req`'s pod binds to `node` (None: nothing left to hold).
        `quota` (asked only when there is something to hold) caps the pods held for by the team's
        quota; without it the declared size stands."""
        inventory_node = index.node(node)
        if req.job is None or not req.wants_accelerators or inventory_node is None:
            return None
        leaf = inventory_node.accelerators.topology.path("leaf")
        placed = self.job_placed(index, req.job, except_uid=req.pod.uid)
        left = self.job_need(index, req) - 1
        if left > 0 and quota is not None:
            more = pods_quota_admits(quota(), inventory_node.accelerator_type or "")
            if more is not None:
                left = min(left, self.job_unplaced(index, req) + more)
        if left <= 0 or leaf[-1] is None:
            return None
        shaped = self.shaped(req, index)
        ttl = index.policy.settings.scoring.job_hold_ttl_seconds
        # `size - placed` is what the hold still waits for (held_for_jobs): `left` after this bind
        return JobHold(req.job, leaf, shaped.resource, shaped.units, placed + 1 + left, now + ttl)

    def hold(self, hold: JobHold) -> None:
        if len(self.holds) >= HOLDS_LIMIT:
            self.holds.pop(min(self.holds, key=lambda j: self.holds[j].expires))
        self.holds[hold.job] = hold

    def held_for_jobs(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], pos: IntColumn
    ) -> BoolColumn | None:
        """Rule 3: which candidates taking this pod would leave a held leaf short of its job's pods."""
        if not self.holds or not req.wants_accelerators:
            return None
        mine = dict(req.resources)
        held = np.zeros(len(names), dtype=bool)
        for hold in list(self.holds.values()):
            if hold.job == req.job or not mine.get(hold.resource):
                continue
            remaining = hold.size - self.job_placed(index, hold.job)
            if remaining <= 0:
                self.holds.pop(hold.job, None)
                continue
            leaf_nodes = self._leaf_nodes(index, hold.leaf)
            slots: dict[str, int] = {}
            for name in leaf_nodes:
                devices = self.effective(index, name)
                slots[name] = devices.free_units(hold.resource) // hold.units if devices is not None else 0
            total = sum(slots.values())
            if total < remaining:
                continue  # the leaf cannot hold the job anyway; holding it helps no one
            for i, name in enumerate(names):
                if name in slots and int(pos[i]) < len(index.names):
                    devices = self.effective(index, name)
                    free = devices.free_units(hold.resource) if devices is not None else 0
                    after = max(0, free - mine[hold.resource]) // hold.units
                    if total - slots[name] + after < remaining:
                        held[i] = True
        return held if held.any() else None

    def _leaf_nodes(self, index: ClusterIndex, leaf: tuple[str | None, ...]) -> list[str]:
        """The index's nodes on one leaf (full path), found through the interned level ids."""
        level = self.classes.level_ids.get(leaf)
        if level is None:
            return []
        levels, _ = self.classes.topo_columns()
        at = np.flatnonzero(levels[index.topo_col[:-1], 0] == level)
        return [index.names[i] for i in at.tolist()]

    def memo_room(self) -> None:
        if len(self.verdicts) > MEMO_LIMIT:
            self.verdicts.clear()
        if len(self.frag_memo) > MEMO_LIMIT:
            self.frag_memo.clear()
