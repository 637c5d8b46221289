"""The extender's preempt step: which of the scheduler's preemption candidates really make room.

kube-scheduler's default preemption counts only extended-resource totals, so it may propose
victims whose removal frees the wrong units: MIG slices or time-sliced shares when the pod needs
whole GPUs, devices of another type, or a node the pod may not use at all (protocols.md 1.6).
This step replays the filter check (accel.placement.filter_rules) on each candidate node as it would be with
the proposed victims gone, and keeps only the nodes where the pod then fits.

Rules:
1. A candidate is kept iff it has at least one proposed victim and `check_node` passes on its
   device model rebuilt from its bound pods *minus* the victims (accel.capacity.devices rules 1 and 2),
   plus the assumed binds on it (accel.placement.state rule 2) other than the victims' and the
   preemptor's own. A node with no victims is dropped (a returned node without victims is a
   scheduler-side error).
2. Victim UIDs the index does not show on that node (watch behind, or another node's pod) are
   kept out of the math: they free nothing here. The caller still returns the scheduler's victim
   list unchanged; this step never adds or removes victims.
3. Kept nodes come back in the order given. Nodes unknown to the index are dropped (their
   devices cannot be checked, and evicting pods on a guess is not undone by a retry).
4. Teams (issue 21): unless the policy says `crossTeamPreemption: true`, a node is kept only when
   every proposed victim there is a pod of the preemptor's own team (the namespace label, never a
   pod label). A PriorityClass is cluster-wide and any pod's author may name one (Kubernetes lets
   every namespace use even `system-cluster-critical` unless a ResourceQuota forbids it), so
   without this rule an author could evict other teams' GPU pods. A victim the index does not
   know (neither in the watch nor a bind in flight) counts as another team's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from accel.capacity.devices import DeviceError, NodeDevices, build_node_devices
from accel.placement.filter_rules import PodRequest, Verdict, check_node
from accel.placement.index import ClusterIndex
from accel.placement.state import ExtenderState

TeamOf = Callable[[str], str | None]  # namespace -> team (its label), None when it has none


class PreemptStep:
    """The preempt step of `accel.placement.core.ExtenderCore`, over the state it shares with the other
    steps."""

    def __init__(self, state: ExtenderState) -> None:
        self.state = state

    def preempt(
        self, index: ClusterIndex, req: PodRequest, victims: Mapping[str, Sequence[str]], team_of: TeamOf
    ) -> list[str]:
        """The candidate nodes (keys of `victims`, node -> victim UIDs) where evicting those
        victims lets `req` pass the filter, in the given order (module rules); `team_of` maps a
        namespace to its team (rule 4)."""
        return [
            name for name, uids in victims.items() if self.preempt_verdict(index, req, name, uids, team_of).ok
        ]

    def preempt_verdict(
        self, index: ClusterIndex, req: PodRequest, name: str, uids: Sequence[str], team_of: TeamOf
    ) -> Verdict:
        """Rules 1 and 4 for one node; the reason says why a node was dropped (for logs and tests)."""
        if not uids:
            return Verdict(False, f"accel: no victims proposed on node {name}", unresolvable=True)
        if not index.policy.settings.cross_team_preemption:
            team = team_of(req.pod.namespace)
            for uid in uids:
                key = self._pod_key(index, uid)
                if key is None or team_of(key.split("/", 1)[0]) != team:
                    whose = f"pod {key}" if key else f"pod uid {uid} (not seen yet)"
                    why = (f"accel: {whose} on node {name} is not of the preemptor's team "
                           f"{team or '(none)'}; pods preempt only their own team's pods")
                    return Verdict(False, why, unresolvable=True)
        record = index.records.get(name)
        if record is None:
            return check_node(req, name, None, None)
        gone = frozenset(uids)
        remaining = [pod for pod in record.pods if pod.uid not in gone]
        devices = (
            record.devices
            if len(remaining) == len(record.pods)
            else build_node_devices(record.node, remaining)
        )
        devices = self._with_assumed(devices, name, gone | {req.pod.uid})
        return check_node(req, name, record.node, devices)

    def _pod_key(self, index: ClusterIndex, uid: str) -> str | None:
        """"namespace/name" of a pod the watch shows, or of a bind in flight; None if unknown."""
        if (pod := index.pods_by_uid.get(uid)) is not None:
            return f"{pod.namespace}/{pod.name}"
        assumed = self.state.assumptions.by_uid.get(uid)
        return assumed.pod_key if assumed is not None else None

    def _with_assumed(self, devices: NodeDevices, name: str, skip: frozenset[str]) -> NodeDevices:
        """`devices` plus the node's assumed binds, except those of the `skip` UIDs."""
        for item in self.state.assumptions.on_node(name):
            if item.uid not in skip:
                try:
                    devices = devices.with_assignment(item.assignment)
                except DeviceError:
                    continue  # as ExtenderState.effective: a stale assumption that no longer fits
        return devices
