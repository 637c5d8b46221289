"""A slow, per-node reference of the extender's filter and prioritize, to check the fast path against.

It follows the rules as written (accel.placement.filter_rules, accel.placement.score_rules,
accel.placement.topology_rules) one node
at a time with the plain functions, no classes, columns or caches. The one thing it copies from
the engine is the candidate set each component is normalised over (rule 1 of accel.placement.score_rules):
preference and fragmentation over the candidates, topology over the candidates' raw values
*without* same-node peers plus the raw value of every node hosting a peer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accel.cluster.labels import Topology
from accel.placement.core import ExtenderCore
from accel.placement.filter_columns import FilterOutcome
from accel.placement.filter_rules import PodRequest, check_node
from accel.placement.index import ClusterIndex
from accel.placement.score import combine, scarcity_raw
from accel.placement.score_rules import (
    cluster_context,
    fragmentation_raw,
    normalise,
    preference_raw,
)
from accel.placement.topology_rules import (
    CLOSENESS_SHARE,
    RDMA_BONUS,
    SAME_LEAF,
    SAME_SPINE,
    SAME_ZONE,
    topology_raw,
)


def reference_filter(
    core: ExtenderCore, index: ClusterIndex, req: PodRequest, names: Sequence[str]
) -> FilterOutcome:
    passed: list[str] = []
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for name in names:
        verdict = check_node(req, name, index.node(name), core.state.effective(index, name))
        if verdict.ok:
            passed.append(name)
        else:
            (unresolvable if verdict.unresolvable else failed)[name] = verdict.reason
    return FilterOutcome(passed, failed, unresolvable)


def _peers(core: ExtenderCore, index: ClusterIndex, req: PodRequest) -> list[tuple[str, Topology]]:
    if req.job is None:
        return []
    uid = req.pod.uid
    placed = [n for u, n in index.job_nodes.get(req.job, ()) if u != uid]
    placed += [a.node for a in core.state.assumptions.by_uid.values() if a.job == req.job and a.uid != uid]
    out = []
    for name in placed:
        node = index.node(name)
        if node is not None:
            out.append((name, node.accelerators.topology))
    return out


def _room(core: ExtenderCore, index: ClusterIndex, req: PodRequest, known: list[str]) -> dict[str, float]:
    """A job's first pod, node by node: 10 / 6 / 3 when the candidates of the node's leaf / spine /
    zone hold all the job's remaining pods, plus the RDMA bonus (accel.placement.score.room_levels)."""
    need = core.state.job_need(index, req)
    if need <= 1:
        return {}
    shaped = core.state.shaped(req, index)
    slots = {n: core.state.effective(index, n).free_units(shaped.resource) // shaped.units for n in known}  # type: ignore[union-attr]
    topo = {n: index.node(n).accelerators.topology for n in known}  # type: ignore[union-attr]
    raw: dict[str, float] = {}
    for name in known:
        level_score = 0.0
        for level, value in (("leaf", SAME_LEAF), ("spine", SAME_SPINE), ("zone", SAME_ZONE)):
            path = topo[name].path(level)
            if path[-1] is not None and sum(slots[n] for n in known if topo[n].path(level) == path) >= need:
                level_score = value
                break
        if slots[name] < 1:
            level_score = 0.0
        raw[name] = CLOSENESS_SHARE * level_score + (RDMA_BONUS if topo[name].rdma else 0.0)
    return normalise(raw)


def _topology(core: ExtenderCore, index: ClusterIndex, req: PodRequest, known: list[str]) -> dict[str, float]:
    """Normalised topology value per known candidate (see module docstring for the domain)."""
    if req.job is None:
        return {}
    peers = _peers(core, index, req)
    if not peers:
        return _room(core, index, req, known)
    hosts = {name for name, _ in peers}
    domain: dict[object, float] = {}
    for name in known:
        topo = index.node(name).accelerators.topology  # type: ignore[union-attr]
        domain[("class", name)] = topology_raw("", topo, peers, in_job=True)
    for host in hosts:
        topo = index.node(host).accelerators.topology  # type: ignore[union-attr]
        domain[("host", host)] = topology_raw(host, topo, peers, in_job=True)
    norm = normalise(domain)
    return {n: norm[("host", n)] if n in hosts else norm[("class", n)] for n in known}


def reference_prioritize(
    core: ExtenderCore, index: ClusterIndex, req: PodRequest, names: Sequence[str]
) -> list[tuple[str, int]]:
    settings = index.policy.settings.scoring
    known = [n for n in names if index.node(n) is not None]
    devices = {n: core.state.effective(index, n) for n in known}
    shaped = core.state.shaped(req, index)
    pref = normalise({n: preference_raw(d.gpu_type, req.profile_types) for n, d in devices.items() if d})
    frag: dict[str, float] = {}
    if shaped.units:
        strategy = settings.strategy
        every = [(1, d) for n in index.names if (d := index.devices(n)) is not None]  # node by node
        context = cluster_context(every)
        frag = normalise(
            {
                n: fragmentation_raw(d, shaped, core.state.mix, strategy=strategy, context=context)[0]
                for n, d in devices.items()
                if d
            }
        )
    scarce: dict[str, float] = {}
    if shaped.units and len(shaped.types) > 1:
        by_type = scarcity_raw(
            [d.gpu_type for d in devices.values() if d],
            core.state.prices,
            core.state.free_gpus(index),
            core.state.tflops,
        )
        scarce = normalise({n: by_type[d.gpu_type] for n, d in devices.items() if d})
    topo = _topology(core, index, req, known)
    w = settings.weights
    parts = {"preference": pref, "fragmentation": frag, "scarcity": scarce, "topology": topo}
    columns = {k: np.array([v.get(n, 0.0) for n in names]) for k, v in parts.items()}
    weights = {
        "preference": w.preference,
        "fragmentation": w.fragmentation,
        "topology": w.topology,
        "scarcity": w.scarcity,
    }
    known_mask = np.array([n in devices for n in names], dtype=bool)
    pos = index.positions(names, len(names))
    held = core.state.held_for_jobs(index, req, names, pos)
    combined = combine(columns, weights, known_mask, dominant="topology" if req.job else None, held=held)
    return list(zip(names, combined.scores.tolist(), strict=True))
