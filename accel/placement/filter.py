"""The extender's filter step: which candidate nodes can take the pod, one verdict per node class.

Node names -> positions -> class ids (assumed binds re-classed, accel.placement.state rule 2), one
`accel.placement.filter_rules.check_node` verdict per *distinct* class (memoised per class id, valid across
generations), gathered back to the names as `accel.placement.filter_columns.FilterColumns`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accel.placement.columns import present_ids
from accel.placement.filter_columns import FilterColumns, FilterOutcome, kinds_of, outcome
from accel.placement.filter_rules import PodRequest, Verdict, check_node
from accel.placement.index import ClusterIndex, list_key
from accel.placement.state import ExtenderState


class FilterStep:
    """The filter step of `accel.placement.core.ExtenderCore`, over the state it shares with the other steps."""

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
        """Which candidates pass, and why the others fail (accel.placement.filter_rules rules), in request order.
        Remembers the positions of the passed list: prioritize likely gets exactly these."""
        return self.outcome(index, self.filter_columns(index, req, names, key))

    def outcome(self, index: ClusterIndex, cols: FilterColumns) -> FilterOutcome:
        """`cols` as a FilterOutcome; remembers the positions of the passed list (see `filter`)."""
        result = outcome(cols)
        passed = result.passed
        if passed and len(passed) < len(cols.names) and (passed_key := list_key(passed)) is not None:
            index.remember(passed_key, cols.positions[cols.passing])
        return result
