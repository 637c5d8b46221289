"""Kueue: who owns quota for a queued pod, and the Kueue objects that mirror accel's policy.

The rule (README "OpenDataHub and Kueue"): **Kueue owns quota for queued workloads.** A pod is
queued when it carries the label `kueue.x-k8s.io/queue-name` (what Kueue's job integrations and
its pod integration read), or when its profile is Queue-scheduled (an OpenDataHub HardwareProfile
with `scheduling.type: Queue`, or `kueueLocalQueue` in profiles.yaml). For such a pod accel:
1. never reserves, checks or denies on accel quota (Kueue admitted the workload against its
   ClusterQueue; a denial here would make the Job controller loop on FailedCreate);
2. never counts it in a team's accel usage, so the same GPUs are not booked in both systems;
3. still resolves the profile and team, enforces allowed profiles/types and size limits, and
   injects node affinity, sharing resources, tolerations and cost; the extender still places and
   binds it and records its type and price at bind (chargeback counts it like any other pod).

`accel.quota.kueue_export` turns the policy into the Kueue objects an admin would otherwise write.
"""

from __future__ import annotations

from collections.abc import Mapping

from accel.cluster.pods import PodView
from accel.policy.models import Policy, Profile

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def is_queued(labels: Mapping[str, str], profile: Profile | None) -> bool:
    """True when Kueue owns this pod's quota (module rule)."""
    return bool(labels.get(QUEUE_LABEL)) or (profile is not None and profile.kueue_local_queue is not None)


def queued_profiles(policy: Policy) -> frozenset[str]:
    """Names of the Queue-scheduled profiles (computed once per usage walk, not per pod)."""
    return frozenset(p.name for p in policy.profiles if p.kueue_local_queue is not None)


def pod_is_queued(pod: PodView, queued: frozenset[str]) -> bool:
    """`is_queued` for a pod from the watch; `queued` = `queued_profiles(policy)`."""
    return bool(pod.labels.get(QUEUE_LABEL)) or (bool(queued) and pod.requested_profile in queued)
