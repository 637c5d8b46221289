"""The extender's decision engine: filter, prioritize and bind plans over one cluster snapshot.

Per state generation it keeps an `accel.extender_index.ClusterIndex` (device model, node class
and topology class per node, as numpy columns by node position), rebuilt incrementally. A
request is then: node names -> positions (one dict lookup per name), positions -> class ids
(vectorised), one verdict or component score per *distinct* class (memoised per class id, valid
across generations), and a vectorised gather back to the names. Nodes with assumed binds are the
only ones re-classed per request.

Rules:
1. Every pod seen at filter/prioritize is counted once (by uid) in the learned workload
   histogram; the compiled mix refreshes after 1, 2, 4, ... observations, then every
   `refresh_every`, so memoised scores stay valid between refreshes (same as the simulator).
2. Assumed binds (accel.devices rule 3) are pruned on every call: expired, or shown bound by the
   watch. A node with assumptions is evaluated on its model *plus* those assignments.
3. The engine is pure: the caller passes the snapshot and `now`; IO (binding) stays outside.
4. Everything here (learned mix, assumed binds, caches) is per process. That is sound because the
   scheduler talks to exactly one extender replica: the manifests pin it (one replica, Service
   `sessionAffinity: ClientIP`). Two replicas would each assume only their own binds.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from accel.catalog import Catalog
from accel.columns import IntColumn, id_column, present_ids, round_clamp
from accel.devices import AssumedBinds, Assumption, DeviceError, NodeDevices, format_assignment
from accel.extender_index import Classes, ClusterIndex, build_index, list_key
from accel.extender_topology import JobTopology
from accel.filter_columns import FilterColumns, FilterOutcome, kinds_of, outcome
from accel.filtering import PodRequest, Verdict, check_node, resolve_request
from accel.fragmentation import ClusterContext, TypicalMix, WorkloadHistogram
from accel.inventory import Inventory
from accel.pods import DEVICES_ANNOTATION, TYPE_ANNOTATION, PodView
from accel.policy import Policy
from accel.pricing import PRICE_ANNOTATION, gpu_hour_price, price_annotations
from accel.scoring import (
    ShapedRequest,
    Strategy,
    choose_assignment,
    cluster_context,
    fragmentation_raw,
    normalise,
    pod_shape,
    preference_raw,
)

SEEN_UIDS_LIMIT = 100_000
POD_CACHE_LIMIT = 10_000
FILTER_MEMO_LIMIT = 16  # (candidate list, pod signature) filter decisions kept as columns
MEMO_LIMIT = 200_000  # verdict / fragmentation memo entries before they are dropped and refilled

__all__ = ["BindPlan", "BindRefused", "ClusterIndex", "ExtenderCore", "FilterColumns", "FilterOutcome", "Scores"]


@dataclass(frozen=True, slots=True)
class Scores:
    """Prioritize result: `scores[i]` (0..10) for `names[i]`, in request order.

    `positions[i]` is the position of `names[i]` in `index_names` (== len(index_names) when the
    node is unknown), so a renderer can reuse per-node output cached by position.
    """

    names: Sequence[str]
    positions: IntColumn
    scores: IntColumn
    index_names: tuple[str, ...]

    def pairs(self) -> list[tuple[str, int]]:
        return list(zip(self.names, self.scores.tolist(), strict=True))

    @property
    def all_known(self) -> bool:
        return not len(self.positions) or int(self.positions.max()) < len(self.index_names)


@dataclass(frozen=True, slots=True)
class BindPlan:
    pod: PodView
    node: str
    annotations: dict[str, str]
    assumption: Assumption


class BindRefused(Exception):
    """The bind cannot be done as asked; the message says why (sent back as `Error`)."""


class ExtenderCore:
    """Learned workload, assumed binds and per-generation caches; one per extender process."""

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

    # ---- filter ------------------------------------------------------------------------------
    def _verdict(self, cid: int, req: PodRequest) -> Verdict:
        key = (cid, req.signature)
        verdict = self._verdicts.get(key)
        if verdict is None:
            node, devices = self.classes.class_rep[cid]
            verdict = self._verdicts[key] = check_node(req, "", node, devices)
        return verdict

    def filter_columns(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterColumns:
        """The filter decision as columns (accel.filter_columns): one verdict per class present.
        `key`: a JSON encoding of `names`, if the caller has one (see ClusterIndex.positions).

        Pods of one shape come in runs (a Job's or ReplicaSet's pods), so the columns of the last
        `filter_memo_limit` (remembered list, request signature) pairs are kept and returned as the
        same object while the candidates' class ids (assumed binds included) are unchanged:
        verdicts depend on nothing else (rule 2 of accel.extender_index's class ids).
        """
        self._memo_room()
        pos, cids, _ = self._columns(index, names, key)
        memo_key = (id(pos), req.signature)
        found = self._filter_memo.get(memo_key)
        if (
            found is not None
            and found[0] is self.classes
            and found[1].positions is pos
            and found[1].index_names is index.names
            and np.array_equal(found[1].cids, cids)
        ):
            self._filter_memo.move_to_end(memo_key)
            return found[1]
        verdicts: dict[int, Verdict] = {c: self._verdict(c, req) for c in present_ids(cids)}
        kinds = kinds_of(cids, verdicts, len(self.classes.class_rep))

        def unknown_reason(name: str) -> str:
            return check_node(req, name, None, None).reason

        cols = FilterColumns(names, pos, cids, kinds, verdicts, index.names, unknown_reason)
        if not pos.flags.writeable and (not len(cids) or cids.min() >= 0):  # a remembered list
            self._filter_memo[memo_key] = (self.classes, cols)
            while len(self._filter_memo) > self.filter_memo_limit:
                self._filter_memo.popitem(last=False)
        return cols

    def filter(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterOutcome:
        """Which candidates pass, and why the others fail (accel.filtering rules), in request order.
        Remembers the positions of the passed list: prioritize likely gets exactly these."""
        return self.outcome(index, self.filter_columns(index, req, names, key))

    def outcome(self, index: ClusterIndex, cols: FilterColumns) -> FilterOutcome:
        """`cols` as a FilterOutcome; remembers the positions of the passed list (see `filter`)."""
        result = outcome(cols)
        passed = result.passed
        if passed and len(passed) < len(cols.names) and (passed_key := list_key(passed)) is not None:
            index.remember(passed_key, cols.positions[cols.passing])
        return result

    # ---- prioritize --------------------------------------------------------------------------
    def _frag_raw(self, cid: int, shaped: ShapedRequest, strategy: Strategy) -> float:
        key = (cid, shaped, self.mix_version, strategy)
        value = self._frag.get(key)
        if value is None:
            value = fragmentation_raw(self.classes.class_rep[cid][1], shaped, self.mix, strategy=strategy, context=self.context)[0]
            self._frag[key] = value
        return value

    def _class_parts(self, index: ClusterIndex, req: PodRequest, classes: list[int]) -> dict[int, float]:
        """Weighted preference + fragmentation per class, normalised over the candidates' classes."""
        settings = index.policy.settings.scoring
        rep = self.classes.class_rep
        shaped = self.shaped(req, index)
        pref = normalise({c: preference_raw(rep[c][1].gpu_type, req.profile_types) for c in classes})
        frag_raw = {c: self._frag_raw(c, shaped, settings.strategy) for c in classes} if shaped.units else {}
        frag = normalise(frag_raw)
        w = settings.weights
        return {c: w.preference * pref[c] + w.fragmentation * frag.get(c, 0.0) for c in classes}

    def scores(self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None) -> Scores:
        """Score 0..10 for every candidate, in the order given; unknown nodes get 0.

        The weighted mean of accel.scoring rule 2, split into a class part and a topology part
        and evaluated for all candidates at once (same float operations, same rounding). `key` as
        in `filter`.
        """
        self._memo_room()
        pos, cids, tids = self._columns(index, names, key)
        out = np.zeros(len(names), dtype=np.intp)
        w = index.policy.settings.scoring.weights
        total = w.preference + w.fragmentation + w.topology
        if total > 0 and len(names):
            class_part = id_column(self._class_parts(index, req, present_ids(cids)), len(self.classes.class_rep))[cids + 1]
            topo_column, by_node = self.topology.parts(index, req, present_ids(tids), self.classes, self.assumptions)
            topo = topo_column[tids + 1]
            if by_node:  # nodes hosting peers: their own topology part instead of their class's
                own = np.full(len(index.names) + 1, np.nan)
                own[[index.position[n] for n in by_node]] = list(by_node.values())
                mine = own[pos]
                topo = np.where(np.isnan(mine), topo, mine)
            out = round_clamp((class_part + topo) / total)
            out[cids < 0] = 0
        return Scores(names, pos, out, index.names)

    def prioritize(self, index: ClusterIndex, req: PodRequest, names: Sequence[str]) -> list[tuple[str, int]]:
        """(host, 0..10) for every candidate, in the order given; unknown nodes get 0."""
        return self.scores(index, req, names).pairs()

    # ---- bind --------------------------------------------------------------------------------
    def plan_bind(
        self,
        index: ClusterIndex,
        *,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        now: float,
        ttl: float,
        catalog: Catalog | None = None,
    ) -> BindPlan:
        """Pick devices for the pod on `node` and the annotations to write; BindRefused if it cannot.

        A pod whose type was only decided here (generic or multi-type profile without a quota
        type) has no price yet: with a `catalog`, the bind also writes its cost annotations for
        the type it actually got (accel.pricing), so chargeback never misses a placed pod.
        """
        self.assumptions.prune(now, index.bound_uids)
        pod = self._pods.get(uid) or index.pods_by_uid.get(uid)
        if pod is None or (pod.namespace, pod.name) != (namespace, name):
            raise BindRefused(
                f"accel: pod {namespace}/{name} (uid {uid}) is not known to the extender yet; retry"
            )
        req = resolve_request(pod, index.policy)
        devices = self.effective(index, node, exclude_uid=uid)
        verdict = check_node(req, node, index.node(node), devices)
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
                    context=self.context,
                )
            except DeviceError as exc:
                raise BindRefused(f"accel: cannot bind {namespace}/{name} to {node}: {exc}") from None
            annotations = {
                TYPE_ANNOTATION: devices.gpu_type,
                DEVICES_ANNOTATION: format_assignment(assignment),
            }
            if catalog is not None and PRICE_ANNOTATION not in pod.annotations:
                annotations |= _bind_prices(pod, index, node, devices.gpu_type, catalog)
        expires = now + ttl if math.isfinite(ttl) else math.inf
        assumption = Assumption(uid, pod.key, node, assignment, expires, req.job)
        return BindPlan(pod, node, annotations, assumption)


def _bind_prices(pod: PodView, index: ClusterIndex, node: str, accel_type: str, catalog: Catalog) -> dict[str, str]:
    """Cost annotations for the type the pod got at bind (see `ExtenderCore.plan_bind`)."""
    inventory_node = index.node(node)
    if inventory_node is None:
        return {}
    profile = index.policy.profile(pod.requested_profile or "")
    equivalents = sum(
        (inventory_node.gpu_equivalents(resource, units, catalog) for resource, units in pod.accelerators.items()),
        Fraction(0),
    )
    return price_annotations(gpu_hour_price(profile, accel_type, catalog), equivalents)
