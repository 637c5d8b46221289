"""The extender's prioritize step: a 0..10 score per candidate, computed per node class.

Each component (accel.placement.score.COMPONENTS) is computed once per node class (preference,
fragmentation, scarcity; memoised per class id and mix version) or per topology class (the job's
topology, accel.placement.topology), normalised over the candidates (accel.placement.score_rules rule 1),
gathered back to the candidates and combined by accel.placement.score.combine. The per-candidate
breakdown of the last scored pods is kept so that bind can explain its choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accel.placement.columns import FloatColumn, IntColumn, id_column, present_ids
from accel.placement.filter_rules import PodRequest
from accel.placement.index import ClusterIndex
from accel.placement.score import Combined, combine, room_levels, scarcity_raw
from accel.placement.score_rules import (
    ShapedRequest,
    Strategy,
    fragmentation_raw,
    normalise,
    normalise_array,
    preference_raw,
)
from accel.placement.state import BREAKDOWNS_KEPT, Breakdown, ExtenderState
from accel.placement.topology_rules import CLOSENESS_SHARE, RDMA_BONUS


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


class ScoreStep:
    """The prioritize step of `accel.placement.core.ExtenderCore`, over the state it shares with the other
    steps."""

    def __init__(self, state: ExtenderState) -> None:
        self.state = state

    def _frag_raw(self, cid: int, shaped: ShapedRequest, strategy: Strategy) -> float:
        key = (cid, shaped, self.state.mix_version, strategy)
        value = self.state.frag_memo.get(key)
        if value is None:
            value = fragmentation_raw(
                self.state.classes.class_rep[cid][1],
                shaped,
                self.state.mix,
                strategy=strategy,
                context=self.state.context,
            )[0]
            self.state.frag_memo[key] = value
        return value

    def _class_parts(
        self, index: ClusterIndex, req: PodRequest, classes: list[int]
    ) -> dict[str, dict[int, float]]:
        """Normalised preference, fragmentation and scarcity per class, over the candidates' classes."""
        settings = index.policy.settings.scoring
        rep = self.state.classes.class_rep
        shaped = self.state.shaped(req, index)
        pref = normalise({c: preference_raw(rep[c][1].gpu_type, req.profile_types) for c in classes})
        frag_raw = {c: self._frag_raw(c, shaped, settings.strategy) for c in classes} if shaped.units else {}
        scarce: dict[int, float] = {}
        if shaped.units and len(shaped.types) > 1:
            by_type = scarcity_raw(
                [rep[c][1].gpu_type for c in classes],
                self.state.prices,
                self.state.free_gpus(index),
                self.state.tflops,
            )
            scarce = normalise({c: by_type[rep[c][1].gpu_type] for c in classes})
        return {"preference": pref, "fragmentation": normalise(frag_raw), "scarcity": scarce}

    def _topology_column(
        self, index: ClusterIndex, req: PodRequest, pos: IntColumn, cids: IntColumn, tids: IntColumn
    ) -> FloatColumn:
        """Normalised topology per candidate (0 for a pod outside a multi-pod job)."""
        size = len(pos)
        if req.job is None:
            return np.zeros(size)
        peers = self.state.topology.parts(
            index, req, present_ids(tids), self.state.classes, self.state.assumptions
        )
        if (
            peers is not None
        ):  # the job has placed pods: closeness to them (accel.placement.topology_rules rule 3)
            column, by_node = peers
            topo = column[tids + 1]
            if by_node:  # nodes hosting peers: their own topology part instead of their class's
                own = np.full(len(index.names) + 1, np.nan)
                own[[index.position[n] for n in by_node]] = list(by_node.values())
                mine = own[pos]
                topo = np.where(np.isnan(mine), topo, mine)
            return topo
        need = self.state.job_need(index, req)
        if need <= 1:
            return np.zeros(size)
        # The job's first pod: a node where the whole job fits in one leaf (then spine, zone).
        levels, rdma = self.state.classes.topo_columns()
        known = tids >= 0
        at = np.where(known, tids, 0)
        shaped = self.state.shaped(req, index)
        slots = self._slots(cids, shaped)
        room = room_levels(np.where(known[:, None], levels[at], -1), slots, need)
        raw = CLOSENESS_SHARE * room + np.where(known & rdma[at], RDMA_BONUS, 0.0)
        out = np.zeros(size)
        if known.any():
            out[known] = normalise_array(raw[known])
        return out

    def _slots(self, cids: IntColumn, shaped: ShapedRequest) -> FloatColumn:
        """How many pods of `shaped` fit on each candidate's class (by free units of its main pool)."""
        per_class: dict[int, float] = {}
        for c in present_ids(cids):
            free = self.state.classes.class_rep[c][1].free_units(shaped.resource) if shaped.units else 0
            per_class[c] = float(free // shaped.units) if shaped.units else 1.0
        column: FloatColumn = id_column(per_class, len(self.state.classes.class_rep))[cids + 1]
        return column

    def scores(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> Scores:
        """Score 0..10 for every candidate, in the order given; unknown nodes get 0.

        `key` as in `filter`. The breakdown is kept per pod uid for bind's explanation.
        """
        self.state.memo_room()
        pos, cids, tids = self.state.columns(index, names, key)
        out = np.zeros(len(names), dtype=np.intp)
        if len(names):
            combined = self.combine_columns(index, req, names, pos, cids, tids)
            out = combined.scores
            if req.pod.uid:
                self._keep_breakdown(req.pod.uid, Breakdown(names, combined))
        return Scores(names, pos, out, index.names)

    def combine_columns(
        self,
        index: ClusterIndex,
        req: PodRequest,
        names: Sequence[str],
        pos: IntColumn,
        cids: IntColumn,
        tids: IntColumn,
    ) -> Combined:
        w = index.policy.settings.scoring.weights
        parts = self._class_parts(index, req, present_ids(cids))
        size = len(self.state.classes.class_rep)
        normalised = {name: id_column(values, size)[cids + 1] for name, values in parts.items()}
        normalised["topology"] = self._topology_column(index, req, pos, cids, tids)
        weights = {"preference": w.preference, "fragmentation": w.fragmentation, "topology": w.topology,
                   "scarcity": w.scarcity}
        held = self.state.held_for_jobs(index, req, names, pos)
        return combine(normalised, weights, cids >= 0, dominant="topology" if req.job else None, held=held)

    def _keep_breakdown(self, uid: str, breakdown: Breakdown) -> None:
        kept = self.state.breakdowns
        kept[uid] = breakdown
        kept.move_to_end(uid)
        while len(kept) > BREAKDOWNS_KEPT:
            kept.popitem(last=False)
