"""The topology part of the extender's prioritize: where a job pod's placed peers are.

`JobTopology.parts` gives the weighted topology part (accel.placement.topology_rules rule 3, normalised by
rule 1 of accel.placement.score_rules) per topology class of the candidates, and per node hosting peers. Peers
are the job's pods bound in the index's generation plus its assumed binds, never the pod itself.

Rules:
1. `raw_by_level_counts` is row-wise, so the raw value of *every* topology class is computed once
   and the candidates' rows picked afterwards: bit for bit the per-candidate computation.
2. Those raw values are kept per job while the peers are the index's shared `job_peers` (no
   assumed bind of the job, the pod not among them): a job's pods come in runs. The memo belongs
   to one index and is dropped with it (old indexes are not kept alive).
"""

from __future__ import annotations

import numpy as np

from accel.capacity.devices import AssumedBinds
from accel.cluster.job_intent import JobKey
from accel.placement.columns import FloatColumn
from accel.placement.filter_rules import PodRequest
from accel.placement.index import Classes, ClusterIndex
from accel.placement.score_rules import normalise_array
from accel.placement.topology_rules import raw_by_level_counts

MEMO_LIMIT = 200_000
RawParts = tuple[
    FloatColumn, list[str], FloatColumn, int
]  # per topology class; peer hosts, their values; peers


def peers(
    index: ClusterIndex, req: PodRequest, assumptions: AssumedBinds
) -> tuple[list[int], dict[str, int]]:
    """Topology class of every placed peer of the pod's job (bound or assumed), and count per node
    (read-only: they may be the index's shared `job_peers`)."""
    if req.job is None:
        return [], {}
    uid = req.pod.uid
    assumed = [a.node for a in assumptions.by_uid.values() if a.job == req.job and a.uid != uid]
    bound = index.job_peers(req.job)
    if not assumed and uid not in bound.uids:
        return bound.tids, bound.per_node  # the common case, computed once per generation
    placed = [n for u, n in index.job_nodes.get(req.job, ()) if u != uid] + assumed
    tids: list[int] = []  # one entry per peer
    per_node: dict[str, int] = {}
    records = index.records
    for name in placed:
        rec = records.get(name)
        if rec is not None:
            tids.append(rec.tid)
            per_node[name] = per_node.get(name, 0) + 1
    return tids, per_node


class JobTopology:
    """Topology parts for prioritize, with the per-job raw values of rule 2."""

    def __init__(self) -> None:
        self._memo: dict[JobKey, RawParts] = {}
        self._of: ClusterIndex | None = None

    def parts(
        self,
        index: ClusterIndex,
        req: PodRequest,
        tids: list[int],
        classes: Classes,
        assumptions: AssumedBinds,
    ) -> tuple[FloatColumn, dict[str, float]] | None:
        """Normalised topology part per topology class (column by tid + 1, for the classes `tids`),
        and per node hosting peers; None when the job has no placed pods (nothing to be close to).
        Raw values of the classes and of the peer-hosting nodes are normalised together, exactly as
        one `normalise` over both would."""
        column = np.zeros(len(classes.topo_rep) + 1)
        if req.job is None:
            return column, {}
        raw_all, host_names, raw_hosts, placed = self._raw(index, req, classes, assumptions)
        if not placed:
            return None
        at = np.array(tids, dtype=np.intp)
        raw = np.concatenate((raw_all[at], raw_hosts))  # topology classes, then peer-hosting nodes
        scaled = normalise_array(raw)
        column[at + 1] = scaled[: len(tids)]
        return column, dict(zip(host_names, scaled[len(tids) :].tolist(), strict=True))

    def _raw(
        self, index: ClusterIndex, req: PodRequest, classes: Classes, assumptions: AssumedBinds
    ) -> RawParts:
        """Raw value of every topology class, and of every node hosting peers (rules 1 and 2)."""
        assert req.job is not None
        peer_tids, per_node = peers(index, req, assumptions)
        shared = per_node is index.job_peers(req.job).per_node
        if self._of is not index:
            self._memo.clear()
            self._of = index
        if shared and (found := self._memo.get(req.job)) is not None:
            return found
        levels, rdma = classes.topo_columns()
        peers_on = np.bincount(levels[peer_tids].ravel() + 1, minlength=len(classes.level_ids) + 1).astype(
            np.float64
        )
        peers_on[0] = 0.0  # unknown levels never match
        raw_all = raw_by_level_counts(levels, rdma, peers_on, len(peer_tids))
        hosts = [index.records[n].tid for n in per_node]
        same = np.array(list(per_node.values()), dtype=np.float64)
        raw_hosts = (
            raw_by_level_counts(levels[hosts], rdma[hosts], peers_on, len(peer_tids), same) if hosts else same
        )
        result = (raw_all, list(per_node), raw_hosts, len(peer_tids))
        if shared:
            if len(self._memo) > MEMO_LIMIT:
                self._memo.clear()
            self._memo[req.job] = result
        return result
