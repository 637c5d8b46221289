"""The extender's filter step: which candidate nodes can take the pod, one verdict per node class.

Node names -> positions -> class ids (assumed binds re-classed, accel.placement.state rule 2), one
`accel.placement.filter_rules.check_node` verdict per *distinct* class (memoised per class id, valid across
generations), gathered back to the names as `accel.placement.filter_columns.FilterColumns`.

Required topology (Kueue `podset-required-topology`, accel.cluster.job_intent rule 3) is a second,
per-node pass over the nodes that passed (`required_topology`):
1. Once a pod of the job is placed (bound or assumed), only nodes in the same domain (leaf, spine,
   zone or node) as the job's pods pass; with pods in several domains, the one holding most.
2. For the job's first pod, only nodes in a domain whose passing nodes have room for all the
   job's remaining pods pass; when no domain has, none passes, and the reason says so.
3. A node without the level's label is not in any domain and fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from accel.cluster.job_intent import REQUIRED_TOPOLOGY, job_intent
from accel.placement.columns import present_ids
from accel.placement.filter_columns import FilterColumns, FilterOutcome, kinds_of, outcome
from accel.placement.filter_rules import PodRequest, Verdict, check_node
from accel.placement.index import ClusterIndex, list_key
from accel.placement.state import ExtenderState


class FilterStep:
    """The filter step of `accel.placement.core.ExtenderCore`, over the state it shares with the other
    steps."""

    def __init__(self, state: ExtenderState) -> None:
        self.state = state

    def _verdict(self, cid: int, req: PodRequest) -> Verdict:
        key = (cid, req.signature)
        verdict = self.state.verdicts.get(key)
        if verdict is None:
            node, devices = self.state.classes.class_rep[cid]
            verdict = self.state.verdicts[key] = check_node(req, "", node, devices)
        return verdict

    def filter_columns(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterColumns:
        """The filter decision as columns (accel.placement.filter_columns): one verdict per class present.
        `key`: a JSON encoding of `names`, if the caller has one (see ClusterIndex.positions).

        Pods of one shape come in runs (a Job's or ReplicaSet's pods), so the columns of the last
        `filter_memo_limit` (remembered list, request signature) pairs are kept and returned as the
        same object while the candidates' class ids (assumed binds included) are unchanged:
        verdicts depend on nothing else (rule 2 of accel.placement.index's class ids).
        """
        self.state.memo_room()
        pos, cids, _ = self.state.columns(index, names, key)
        memo_key = (id(pos), req.signature)
        found = self.state.filter_memo.get(memo_key)
        if (
            found is not None
            and found[0] is self.state.classes
            and found[1].positions is pos
            and found[1].index_names is index.names
            and np.array_equal(found[1].cids, cids)
        ):
            self.state.filter_memo.move_to_end(memo_key)
            return found[1]
        verdicts: dict[int, Verdict] = {c: self._verdict(c, req) for c in present_ids(cids)}
        kinds = kinds_of(cids, verdicts, len(self.state.classes.class_rep))

        def unknown_reason(name: str) -> str:
            return check_node(req, name, None, None).reason

        cols = FilterColumns(names, pos, cids, kinds, verdicts, index.names, unknown_reason)
        if not pos.flags.writeable and (not len(cids) or cids.min() >= 0):  # a remembered list
            self.state.filter_memo[memo_key] = (self.state.classes, cols)
            while len(self.state.filter_memo) > self.state.filter_memo_limit:
                self.state.filter_memo.popitem(last=False)
        return cols

    def filter(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterOutcome:
        """Which candidates pass, and why the others fail (accel.placement.filter_rules rules), in request
        order.
        Remembers the positions of the passed list: prioritize likely gets exactly these."""
        return self.outcome(index, self.filter_columns(index, req, names, key))

    def outcome(self, index: ClusterIndex, cols: FilterColumns) -> FilterOutcome:
        """`cols` as a FilterOutcome; remembers the positions of the passed list (see `filter`)."""
        result = outcome(cols)
        passed = result.passed
        if passed and len(passed) < len(cols.names) and (passed_key := list_key(passed)) is not None:
            index.remember(passed_key, cols.positions[cols.passing])
        return result

    def required_topology(
        self, index: ClusterIndex, req: PodRequest, cols: FilterColumns
    ) -> FilterOutcome | None:
        """The module docstring's required-topology pass; None when the pod requires none."""
        if req.job is None or not req.wants_accelerators:
            return None
        intent = job_intent(req.pod.labels, req.pod.annotations)
        if not intent.required:
            return None
        base = outcome(cols)
        level = intent.level

        def domain(name: str) -> tuple[str | None, ...] | None:
            node = index.node(name)
            if node is None:
                return None
            path = (name,) if level == "node" else node.accelerators.topology.path(level)
            return path if path[-1] is not None else None

        job = f"{req.job[0]}/{req.job[1]}"
        placed = [n for u, n in index.job_nodes.get(req.job, ()) if u != req.pod.uid]
        placed += [
            a.node
            for a in self.state.assumptions.by_uid.values()
            if a.job == req.job and a.uid != req.pod.uid
        ]
        homes = Counter(d for n in placed if (d := domain(n)) is not None)
        allowed: set[tuple[str | None, ...]]
        if homes:  # rule 1
            home = max(homes, key=lambda d: (homes[d], d))
            allowed = {home}
            where = "/".join(p for p in home if p)
            why = f"job {job} requires its pods on one {level} ({REQUIRED_TOPOLOGY}); they are on {level} "
            why += where
        else:  # rule 2
            need = self.state.job_need(index, req)
            shaped = self.state.shaped(req, index)
            room: Counter[tuple[str | None, ...]] = Counter()
            for name in base.passed:
                devices = self.state.effective(index, name)
                if (d := domain(name)) is not None and devices is not None and shaped.units:
                    room[d] += devices.free_units(shaped.resource) // shaped.units
            allowed = {d for d, n in room.items() if n >= need}
            why = f"job {job} requires its {need} remaining pods on one {level} ({REQUIRED_TOPOLOGY}); " + (
                "this node's " + level + " has no room for them"
                if allowed
                else f"no {level} has room for them now"
            )
        passed: list[str] = []
        failed = dict(base.failed)
        for name in base.passed:
            d = domain(name)
            if d is None:
                failed[name] = (
                    f"job {job} requires its pods on one {level} ({REQUIRED_TOPOLOGY}); node has no {level} "
                    "label"
                )
            elif d in allowed:
                passed.append(name)
            else:
                failed[name] = why
        return FilterOutcome(passed, failed, dict(base.unresolvable))
