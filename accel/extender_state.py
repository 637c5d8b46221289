"""The extender's state over cluster snapshots: learned workload, assumed binds, per-class caches.

`ExtenderState` is the base `accel.placement.ExtenderCore` is built on: it keeps the
`accel.extender_index.ClusterIndex` of the current generation (rebuilt incrementally), the pods
seen (for bind), the learned workload histogram and mix, the assumed binds, and the per-class memos
the filter (accel.extender_filter) and prioritize (accel.extender_scores) steps fill.

Rules:
1. Every pod seen at filter/prioritize is counted once (by uid) in the learned workload
   histogram; the compiled mix refreshes after 1, 2, 4, ... observations, then every
   `refresh_every`, so memoised scores stay valid between refreshes (same as the simulator).
2. Assumed binds (accel.devices rule 3) are pruned on every call: expired, or shown bound by the
   watch. A node with assumptions is evaluated on its model *plus* those assignments.
3. Everything here (learned mix, assumed binds, caches) is per process. That is sound because the
   scheduler talks to exactly one extender replica: the manifests pin it (one replica, Service
   `sessionAffinity: ClientIP`). Two replicas would each assume only their own binds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from accel.columns import IntColumn
from accel.devices import AssumedBinds, DeviceError, NodeDevices
from accel.extender_index import Classes, ClusterIndex, build_index
from accel.extender_topology import JobTopology
from accel.filter_columns import FilterColumns
from accel.filtering import PodRequest, Verdict, resolve_request
from accel.fragmentation import ClusterContext, TypicalMix, WorkloadHistogram
from accel.inventory import Inventory
from accel.pods import PodView
from accel.policy import Policy
from accel.scoring import ShapedRequest, cluster_context, pod_shape

SEEN_UIDS_LIMIT = 100_000
POD_CACHE_LIMIT = 10_000
FILTER_MEMO_LIMIT = 16  # (candidate list, pod signature) filter decisions kept as columns
MEMO_LIMIT = 200_000  # verdict / fragmentation memo entries before they are dropped and refilled


class ExtenderState:
    """What the filter, prioritize and bind steps share: snapshot index, learned mix, assumed binds, caches."""

    def __init__(
        self, *, half_life: float = 2000.0, refresh_every: int = 256, filter_memo_limit: int = FILTER_MEMO_LIMIT
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
        self._pods: OrderedDict[str, PodView] = OrderedDict()
        self._index: ClusterIndex | None = None
        self.classes = Classes()
        self._verdicts: dict[tuple[int, tuple[object, ...]], Verdict] = {}
        self._frag: dict[tuple[int, ShapedRequest, int, str], float] = {}
        self.topology = JobTopology()
        self._filter_memo: OrderedDict[tuple[int, tuple[object, ...]], tuple[Classes, FilterColumns]] = OrderedDict()
        self.context: ClusterContext | None = None  # device share per class, for the scarcity term

    # ---- snapshot and bookkeeping ------------------------------------------------------------
    def index(self, generation: int, policy: Policy, inventory: Inventory) -> ClusterIndex:
        """The index of this generation, rebuilt incrementally from the last one when it changed."""
        if self._index is None or self._index.generation != generation or self._index.policy is not policy:
            if self.classes.full:
                self.classes, self._index = Classes(), None
                self._verdicts.clear()
                self._frag.clear()
            previous = self._index
            self._index = build_index(generation, policy, inventory, classes=self.classes, previous=previous)
            if previous is not None:
                # Pods the watch showed before and no longer shows (finished, failed, deleted) free
                # their devices now, not when their assumption's TTL runs out.
                self.assumptions.drop(previous.pods_by_uid.keys() - self._index.pods_by_uid.keys())
            self._refresh_context(self._index)
        return self._index

    def _refresh_context(self, index: ClusterIndex) -> None:
        """The scorer's cluster context (device share per class; static inventory). Counted per
        node class with one bincount, so it costs O(classes) per generation; the fragmentation
        memo is only dropped when the shares really changed (nodes added or removed)."""
        counts = np.bincount(index.class_col[:-1], minlength=len(self.classes.class_rep))
        context = cluster_context([(int(n), self.classes.class_rep[c][1]) for c, n in enumerate(counts.tolist()) if n])
        if context != self.context:
            self.context = context
            self._frag.clear()

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

    def _columns(
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

    def _memo_room(self) -> None:
        if len(self._verdicts) > MEMO_LIMIT:
            self._verdicts.clear()
        if len(self._frag) > MEMO_LIMIT:
            self._frag.clear()
