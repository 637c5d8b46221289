"""The extender's prioritize step: a 0..10 score per candidate, computed per node class.

The weighted mean of accel.scoring rule 2, split into a class part (preference + fragmentation,
memoised per class id and mix version) and a topology part (accel.extender_topology), evaluated for
all candidates at once and gathered back to the names as `Scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accel.columns import IntColumn, id_column, present_ids, round_clamp
from accel.extender_index import ClusterIndex
from accel.extender_state import ExtenderState
from accel.filtering import PodRequest
from accel.scoring import ShapedRequest, Strategy, fragmentation_raw, normalise, preference_raw


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


class ExtenderScorer(ExtenderState):
    """The prioritize step of `accel.placement.ExtenderCore` over the state it inherits."""

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
