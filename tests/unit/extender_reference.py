"""A slow, per-node reference of the extender's filter and prioritize, to check the fast path against.

It follows the rules as written (accel.filtering, accel.scoring, accel.topology_score) one node
at a time with the plain functions, no classes, columns or caches. The one thing it copies from
the engine is the candidate set each component is normalised over (rule 1 of accel.scoring):
preference and fragmentation over the candidates, topology over the candidates' raw values
*without* same-node peers plus the raw value of every node hosting a peer.
"""

from __future__ import annotations

from collections.abc import Sequence

from accel.filtering import PodRequest, check_node
from accel.labels import Topology
from accel.placement import ClusterIndex, ExtenderCore, FilterOutcome
from accel.scoring import clamp, cluster_context, fragmentation_raw, normalise, preference_raw
from accel.topology_score import topology_raw


def reference_filter(core: ExtenderCore, index: ClusterIndex, req: PodRequest, names: Sequence[str]) -> FilterOutcome:
    passed: list[str] = []
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for name in names:
        verdict = check_node(req, name, index.node(name), core.effective(index, name))
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
    placed += [a.node for a in core.assumptions.by_uid.values() if a.job == req.job and a.uid != uid]
    out = []
    for name in placed:
        node = index.node(name)
        if node is not None:
            out.append((name, node.accelerators.topology))
    return out


def _topology(core: ExtenderCore, index: ClusterIndex, req: PodRequest, known: list[str]) -> dict[str, float]:
    """Normalised topology value per known candidate (see module docstring for the domain)."""
    if req.job is None:
        return {}
    peers = _peers(core, index, req)
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
    devices = {n: core.effective(index, n) for n in known}
    shaped = core.shaped(req, index)
    pref = normalise({n: preference_raw(d.gpu_type, req.profile_types) for n, d in devices.items() if d})
    frag: dict[str, float] = {}
    if shaped.units:
        strategy = settings.strategy
        every = [(1, d) for n in index.names if (d := index.devices(n)) is not None]  # node by node
        context = cluster_context(every)
        frag = normalise({n: fragmentation_raw(d, shaped, core.mix, strategy=strategy, context=context)[0] for n, d in devices.items() if d})
    topo = _topology(core, index, req, known)
    w = settings.weights
    total = w.preference + w.fragmentation + w.topology
    out = []
    for name in names:
        if name not in devices or total <= 0:
            out.append((name, 0))
            continue
        class_part = w.preference * pref[name] + w.fragmentation * frag.get(name, 0.0)
        out.append((name, clamp((class_part + w.topology * topo.get(name, 0.0)) / total)))
    return out
