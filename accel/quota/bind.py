"""The bind half of per-type quota (accel.quota invariant 1): the type is fixed where the capacity is.

A pod of a multi-type (or generic) profile is admitted against its team's "*" quota and the
promise that some allowed type has room; its type is only known when kube-scheduler picks a node.
Rules (pure; the extender does the IO in extender/quota_gate.py):
1. Only an UNDECIDED pod (`accel.capacity.inventory.pod_accelerator_type` is "") of a team with a quota on
   some single type is gated; typed pods (one possible type, or `spec.nodeName`) were charged to
   their type at admission.
2. Filter: a node whose type has a quota line for the team and no room left on it for this pod
   (usage = the watch + live ledger entries, this pod's own conversion excluded) fails, saying
   which quota is full. Nodes of every other type keep their verdict, so the scheduler lands the
   pod on the first type in preference order that can hold it on one node, now.
3. Bind: the same check against a fresh ledger read, and on room a `bound/<uid>` entry moving the
   pod's amount off the undecided type onto the node's type, written with compare-and-swap. A
   conflict re-decides; a lost race for the last room refuses the bind (the scheduler retries and
   the filter then drops that type). The entry is consumed when the watch shows the pod bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from accel.capacity.inventory import (
    Inventory,
    NodeInventory,
    pod_accelerator_type,
    requested_gpu_equivalents,
)
from accel.cluster.catalog import Catalog
from accel.cluster.gpu_equivalents import format_gpus
from accel.cluster.pods import PodView
from accel.policy.models import ALL_TYPES, Policy, Profile, Team
from accel.quota.ledger import BOUND, Ledger, Reservation
from accel.quota.rules import (
    SETTLE_S,
    UNDECIDED,
    QuotaExcess,
    ReservationOutcome,
    Usage,
    bound_id,
    team_usage_now,
    type_room,
)


def gated_team(pod: PodView, inventory: Inventory, policy: Policy) -> Team | None:
    """Rule 1: the team whose per-type quota gates this pod's node type, or None."""
    if not pod.accelerators or pod.node_name:
        return None
    name = inventory.team_of(pod.namespace, policy.settings.team_label)
    team = policy.team(name) if name else None
    if team is None or not any(key != ALL_TYPES for key in team.quota):
        return None
    return team if pod_accelerator_type(pod, inventory, policy) == UNDECIDED else None


def profile_of(pod: PodView, policy: Policy) -> Profile | None:
    return policy.profile(pod.requested_profile) if pod.requested_profile else None


def full_reason(excess: QuotaExcess) -> str:
    return (f'accel: team "{excess.team}" has no {excess.key} quota left for this pod '
            f"({format_gpus(excess.used)} of {format_gpus(excess.limit)} in use or reserved, "
            f"pod needs {format_gpus(excess.requested)}); other allowed types are still tried")


def blocked_types(team: Team, pod: PodView, profile: Profile | None, catalog: Catalog,
                  usage: Usage) -> tuple[tuple[str, str], ...]:
    """Rule 2: (type, reason) for every type whose quota line has no room for the pod."""
    blocked: list[tuple[str, str]] = []
    for key in team.quota:
        if key == ALL_TYPES:
            continue
        excess = type_room(
            team, key, requested_gpu_equivalents(pod.accelerators, key, profile, catalog), usage
        )
        if excess is not None:
            blocked.append((key, full_reason(excess)))
    return tuple(sorted(blocked))


def conversion(team: Team, pod: PodView, node: NodeInventory, profile: Profile | None, catalog: Catalog, *,
               now: float, ttl: float) -> Reservation:
    """Rule 3's ledger entry for binding `pod` to `node`."""
    on_node = sum((node.gpu_equivalents(r, n, catalog) for r, n in pod.accelerators.items()), Fraction(0))
    pending = requested_gpu_equivalents(pod.accelerators, UNDECIDED, profile, catalog)
    return Reservation(
        id=bound_id(pod.uid),
        team=team.name,
        type=node.accelerator_type or "",
        amount=on_node,
        namespace=pod.namespace,
        name=pod.name,
        created=now,
        expires=now + ttl,
        stage=BOUND,
        undecided=pending,
    )


def decide_conversion(ledger: Ledger, entry: Reservation, *, team: Team, base: Mapping[str, Usage],
                      visible: frozenset[str], now: float) -> ReservationOutcome:
    """Rule 3 for one compare-and-swap attempt."""
    pruned = ledger.pruned(now=now, visible=visible, settle_s=SETTLE_S)
    usage = team_usage_now(team.name, base, pruned, visible=visible, now=now, exclude=entry.id)
    excess = type_room(team, entry.type, entry.amount, usage)
    if excess is not None:
        return ReservationOutcome(None, (excess,), usage)
    return ReservationOutcome(pruned.with_reservation(entry), (), usage)
