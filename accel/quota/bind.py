"""The bind half of per-type quota (accel.quota invariant 1): the type is fixed where the capacity is.

A pod of a multi-type (or generic) profile is admitted against its team's "*" quota and the
promise that some allowed type has room; its type is only known when kube-scheduler picks a node.
Rules (pure; the extender does the IO in extender/quota_gate.py):
1. A pending pod of a team with a quota on some single type is gated when the node's type has a
   quota line and differs from the type the pod is charged as
   (`accel.capacity.inventory.pod_accelerator_type`, read from the immutable node affinity, never
   from an annotation): an UNDECIDED pod (""), and any pod whose charge names another type than
   the node's (issue 21: nothing the author edits after admission may move a pod onto a type
   without a check). A pod bound to the type it is charged as was checked at admission.
2. Filter: for an UNDECIDED pod, a node whose type has a quota line for the team and no room
   left on it for this pod (usage = the watch + live ledger entries, this pod's own conversion
   excluded) fails, saying which quota is full. Nodes of every other type keep their verdict, so
   the scheduler lands the pod on the first type in preference order that can hold it on one
   node, now.
3. Bind: the same check against a fresh ledger read, and on room a `bound/<uid>` entry moving the
   pod's amount off the undecided type onto the node's type, written with compare-and-swap. A
   conflict re-decides; a lost race for the last room refuses the bind (the scheduler retries and
   the filter then drops that type). The entry is consumed when the watch shows the pod bound.
   A pod charged as another type keeps that charge until the watch shows it bound (the entry
   adds the node's type and subtracts nothing): counted twice for one watch lag, never zero times.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from accel.capacity.inventory import (
    Inventory,
    NodeInventory,
    pending_equivalents,
    pod_accelerator_type,
)
from accel.cluster.catalog import Catalog
from accel.cluster.gpu_equivalents import format_gpus
from accel.cluster.pods import PodView
from accel.policy.models import ALL_TYPES, Policy, Team
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


def quota_team(pod: PodView, inventory: Inventory, policy: Policy) -> Team | None:
    """The team of a pending GPU pod when it has a quota on some single type, else None."""
    if not pod.accelerators or pod.node_name:
        return None
    name = inventory.team_of(pod.namespace, policy.settings.team_label)
    team = policy.team(name) if name else None
    return team if team is not None and any(key != ALL_TYPES for key in team.quota) else None


def gated_team(pod: PodView, inventory: Inventory, policy: Policy, catalog: Catalog) -> Team | None:
    """Rule 2's pods: the team of an UNDECIDED pod whose per-type quota gates its node type, or None."""
    team = quota_team(pod, inventory, policy)
    return team if team is not None and pod_accelerator_type(pod, inventory, catalog) == UNDECIDED else None


def bind_check(
    pod: PodView, node: NodeInventory, inventory: Inventory, policy: Policy, catalog: Catalog
) -> tuple[Team, str] | None:
    """Rule 1 at bind: (team, type the pod is charged as) when binding `pod` to `node` needs the
    quota check and conversion of rule 3, else None."""
    team = quota_team(pod, inventory, policy)
    node_type = node.accelerator_type
    if team is None or not node_type or node_type not in team.quota:
        return None  # no line for this type: only "*", already charged at admission
    charged = pod_accelerator_type(pod, inventory, catalog)
    return None if charged == node_type else (team, charged)


def full_reason(excess: QuotaExcess) -> str:
    return (
        f'accel: team "{excess.team}" has no {excess.key} quota left for this pod '
        f"({format_gpus(excess.used)} of {format_gpus(excess.limit)} in use or reserved, "
        f"pod needs {format_gpus(excess.requested)}); other allowed types are still tried"
    )


def blocked_types(
    team: Team, pod: PodView, inventory: Inventory, catalog: Catalog, usage: Usage
) -> tuple[tuple[str, str], ...]:
    """Rule 2: (type, reason) for every type whose quota line has no room for the pod."""
    blocked: list[tuple[str, str]] = []
    for key in team.quota:
        if key == ALL_TYPES:
            continue
        excess = type_room(team, key, pending_equivalents(pod, key, inventory, catalog), usage)
        if excess is not None:
            blocked.append((key, full_reason(excess)))
    return tuple(sorted(blocked))


def conversion(
    team: Team,
    pod: PodView,
    node: NodeInventory,
    inventory: Inventory,
    catalog: Catalog,
    *,
    now: float,
    ttl: float,
    charged: str = UNDECIDED,
) -> Reservation:
    """Rule 3's ledger entry for binding `pod`, charged as `charged`, to `node`: what the watch
    counts for the pending pod on "" leaves it (the same `pending_equivalents`)."""
    on_node = sum((node.gpu_equivalents(r, n, catalog) for r, n in pod.accelerators.items()), Fraction(0))
    pending = pending_equivalents(pod, UNDECIDED, inventory, catalog) if charged == UNDECIDED else Fraction(0)
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


def decide_conversion(
    ledger: Ledger,
    entry: Reservation,
    *,
    team: Team,
    base: Mapping[str, Usage],
    visible: frozenset[str],
    now: float,
    watermark: int | None = None,
) -> ReservationOutcome:
    """Rule 3 for one compare-and-swap attempt (`watermark`: accel.quota.rules invariant 6)."""
    if ledger.behind(watermark):
        return ReservationOutcome(None, behind=(watermark, ledger.floor))
    pruned = ledger.pruned(now=now, visible=visible, watermark=watermark, settle_s=SETTLE_S)
    usage = team_usage_now(team.name, base, pruned, visible=visible, now=now, exclude=entry.id)
    excess = type_room(team, entry.type, entry.amount, usage)
    if excess is not None:
        return ReservationOutcome(None, (excess,), usage)
    return ReservationOutcome(pruned.with_reservation(entry), (), usage)
