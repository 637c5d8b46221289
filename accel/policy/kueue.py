"""Kueue: who owns quota for a queued pod, and the Kueue objects that mirror accel's policy.

The rule (README "OpenDataHub and Kueue"): **Kueue owns quota for queued workloads of the teams
the admin says Kueue manages** (`kueueManaged: true` in teams.yaml). A pod is queued when its team
is Kueue-managed and it carries the label `kueue.x-k8s.io/queue-name` (what Kueue's job
integrations and its pod integration read) or its profile is Queue-scheduled (an OpenDataHub
HardwareProfile with `scheduling.type: Queue`, or `kueueLocalQueue` in profiles.yaml). For such a
pod accel:
1. never reserves, checks or denies on accel quota (Kueue admitted the workload against its
   ClusterQueue; a denial here would make the Job controller loop on FailedCreate);
2. never counts it in a team's accel usage, so the same GPUs are not booked in both systems;
3. still resolves the profile and team, enforces allowed profiles/types and size limits, and
   injects node affinity, sharing resources, tolerations and cost; the extender still places and
   binds it and records its type and price at bind (chargeback counts it like any other pod).
Why the team switch: the label is written by the pod's author, and Kueue only gates pods in the
namespaces (and integrations) it is configured for. Without Kueue there, the label would be a
free pass around accel quota (issue 21: nothing an author writes may change quota), so in a team
the admin has not marked, the label changes nothing and the pod is charged like any other.
A Queue-scheduled profile's pod gets the label (its LocalQueue) from the mutating webhook, so
Kueue's pod integration gates it as the profile says.

`accel.quota.kueue_export` turns the policy into the Kueue objects an admin would otherwise write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from accel.cluster.pods import PodView
from accel.policy.models import Policy, Profile, Team

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def is_queued(labels: Mapping[str, str], profile: Profile | None, team: Team | None) -> bool:
    """True when Kueue owns this pod's quota (module rule)."""
    if team is None or not team.kueue_managed:
        return False
    return bool(labels.get(QUEUE_LABEL)) or (profile is not None and profile.kueue_local_queue is not None)


@dataclass(frozen=True)
class KueueScope:
    """What the module rule needs per pod of a usage walk, computed once per walk."""

    teams: frozenset[str]  # the Kueue-managed teams
    queued_profiles: frozenset[str]  # the Queue-scheduled profiles


def kueue_scope(policy: Policy) -> KueueScope:
    queued = frozenset(p.name for p in policy.profiles if p.kueue_local_queue is not None)
    teams = frozenset(t.name for t in policy.teams if t.kueue_managed)
    return KueueScope(teams=teams, queued_profiles=queued)


def pod_is_queued(pod: PodView, scope: KueueScope, team: str) -> bool:
    """`is_queued` for a pod from the watch, whose team (namespace label) is `team`."""
    if team not in scope.teams:
        return False
    return bool(pod.labels.get(QUEUE_LABEL)) or pod.requested_profile in scope.queued_profiles
