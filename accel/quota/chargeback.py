"""Chargeback: GPU time and cost of bound pods, derived from the pods' own start and end times.

Counting never relies on an in-memory tally (README "Chargeback"): what a pod owes for any time
window is a pure function of its object, so a restarted or new counting replica resumes from a
watermark and can neither double count nor need history. Rules:
1. A pod is charged from the moment it was bound: its `PodScheduled` condition's
   `lastTransitionTime` when that condition is True, else `status.startTime`. An unbound pod owes
   nothing.
2. It is charged until it ended: for a terminal pod (Succeeded/Failed) the latest container
   `finishedAt`, else its Ready=False transition time; for a deleted pod the time its deletion was
   observed (`deleted_at`) when nothing earlier is known; otherwise it is still running.
3. Amount = GPU-equivalents (accel.cluster.gpu_equivalents: a time-slice 1/replicas, a MIG slice its
   compute fraction) x seconds of overlap with the window. Cost = amount / 3600 x price per GPU-hour
   from the policy in force (the profile's `costPerGpuHour`, else the catalog price of the type).
4. Labels: team (namespace label), namespace, type (the node's type; when the node is gone, the
   type its immutable node affinity allows, accel.capacity.pod_types), profile (the requested
   profile when rule 5 believes it, else "").
5. Nothing a pod's author can edit sets the price (annotations are mutable after admission, which
   sees CREATE only): accel's own price annotation is never read; the type comes from the node,
   the team from the namespace, GPUs from the (immutable) spec. The profile is `priced_profile`:
   the requested one only when the team may use it, it lists the node's type and the pod's
   immutable spec is what the webhook writes for it (its node affinity within the profile's
   types, or none for a generic profile of an unrestricted team; time-slices exactly for a
   time-sliced profile); otherwise the most expensive profile that passes those checks, so an
   edited or removed profile annotation never lowers the price (no such profile: the catalog's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from accel.capacity.inventory import Inventory, asks_time_slices, pod_accelerator_type
from accel.capacity.pod_types import selectable_types
from accel.cluster.catalog import Catalog
from accel.cluster.pods import PodView, parse_pod
from accel.policy.models import Policy, Profile, Sharing
from accel.policy.pricing import gpu_hour_price
from accel.quota.rules import is_restricted

Labels = tuple[str, str, str, str]  # team, namespace, type, profile
LABEL_NAMES = ("team", "namespace", "type", "profile")


@dataclass(frozen=True, slots=True)
class PodCharge:
    """What one pod costs per second while it holds its devices."""

    labels: Labels
    gpus: Fraction  # GPU-equivalents held
    price: Decimal | None  # per GPU-hour, in the policy's currency
    start: float  # epoch seconds
    end: float | None  # epoch seconds; None = still running

    def seconds_in(self, start: float, end: float) -> float:
        """Seconds of this pod's lifetime inside [start, end)."""
        stop = end if self.end is None else min(end, self.end)
        return max(0.0, stop - max(start, self.start))


@dataclass(frozen=True, slots=True)
class Usage:
    """GPU-seconds and cost of one label set over a window."""

    gpu_seconds: float
    cost: float


def parse_time(value: Any) -> float | None:
    """RFC 3339 (as the API server writes it) -> epoch seconds; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_times(
    obj: Mapping[str, Any], *, deleted_at: float | None = None
) -> tuple[float | None, float | None]:
    """Rules 1 and 2: (charged from, charged until) of a pod object."""
    raw_status = obj.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    conditions = {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    scheduled = conditions.get("PodScheduled")
    start = (
        parse_time(scheduled.get("lastTransitionTime"))
        if scheduled and scheduled.get("status") == "True"
        else None
    )
    start = start if start is not None else parse_time(status.get("startTime"))
    end: float | None = None
    if status.get("phase") in ("Succeeded", "Failed"):
        finished = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                    for s in status.get("containerStatuses") or [] if isinstance(s, Mapping)]
        known = [f for f in finished if f is not None]
        ready = conditions.get("Ready")
        end = max(known) if known else parse_time(ready.get("lastTransitionTime")) if ready else None
    if end is None and deleted_at is not None:
        end = deleted_at
    return start, end


def pod_charge(obj: Mapping[str, Any], *, policy: Policy, catalog: Catalog, inventory: Inventory,
               deleted_at: float | None = None) -> PodCharge | None:
    """The charge of one pod object (None: unbound, no accelerators, or no known start)."""
    view = parse_pod(obj)
    if not view.node_name or not view.wants_accelerators:
        return None
    start, end = pod_times(obj, deleted_at=deleted_at)
    if start is None:
        return None
    node = inventory.node(view.node_name)
    accel_type = (node.accelerator_type if node is not None and node.accelerator_type
                  else pod_accelerator_type(view, inventory, catalog))
    team = inventory.team_of(view.namespace, policy.settings.team_label) or ""
    profile = priced_profile(view, accel_type, team, policy, inventory, catalog)
    believed = profile is not None and profile.name == view.requested_profile  # else: priced, not named
    return PodCharge(labels=(team, view.namespace, accel_type, profile.name if profile and believed else ""),
                     gpus=_gpus(view, inventory, catalog), price=gpu_hour_price(profile, accel_type, catalog),
                     start=start, end=end)


def priced_profile(view: PodView, accel_type: str, team: str, policy: Policy, inventory: Inventory,
                   catalog: Catalog) -> Profile | None:
    """Rule 5: the profile whose price a pod bound to an `accel_type` node pays (None: catalog)."""
    owner = policy.team(team) if team else None
    allowed = owner.allowed_profiles if owner is not None else None
    selectable = selectable_types(view.required_terms, view.node_selector, inventory.type_index(catalog))
    sliced = asks_time_slices(view)

    def fits(profile: Profile) -> bool:
        if allowed is not None and profile.name not in allowed:
            return False
        if profile.types and accel_type not in profile.types:
            return False
        if (profile.sharing is Sharing.TIME_SLICED) != sliced:
            return False
        if profile.types:  # the webhook narrowed the pod to (some of) the profile's types
            return selectable is not None and selectable <= set(profile.types)
        return selectable is None or is_restricted(owner)  # generic: narrowed only for restricted teams

    requested = policy.profile(view.requested_profile) if view.requested_profile else None
    if requested is not None and fits(requested):
        return requested
    candidates = [p for p in policy.profiles if fits(p)]
    unpriced = Decimal(-1)
    return max(candidates, key=lambda p: gpu_hour_price(p, accel_type, catalog) or unpriced, default=None)


def _gpus(view: PodView, inventory: Inventory, catalog: Catalog) -> Fraction:
    node = inventory.node(view.node_name or "")
    if node is None:
        return Fraction(sum(view.accelerators.values()))  # node gone from the watch: whole units
    return sum((node.gpu_equivalents(r, n, catalog) for r, n in view.accelerators.items()), Fraction(0))


def usage_between(charges: Iterable[PodCharge], start: float, end: float) -> dict[Labels, Usage]:
    """Rule 3 over [start, end): GPU-seconds and cost per label set (sets with 0 left out)."""
    seconds: dict[Labels, float] = {}
    cost: dict[Labels, float] = {}
    for charge in charges:
        held = charge.seconds_in(start, end)
        if held <= 0:
            continue
        gpu_seconds = float(charge.gpus) * held
        seconds[charge.labels] = seconds.get(charge.labels, 0.0) + gpu_seconds
        price = float(charge.price) if charge.price is not None else 0.0
        cost[charge.labels] = cost.get(charge.labels, 0.0) + gpu_seconds / 3600.0 * price
    return {labels: Usage(seconds[labels], cost[labels]) for labels in seconds}


def by_team_and_type(usage: Mapping[Labels, Usage]) -> dict[tuple[str, str], Usage]:
    """Roll label sets up to (team, type), as `accel usage` reports them."""
    rolled: dict[tuple[str, str], Usage] = {}
    for (team, _namespace, accel_type, _profile), value in usage.items():
        key = (team, accel_type)
        before = rolled.get(key, Usage(0.0, 0.0))
        rolled[key] = Usage(before.gpu_seconds + value.gpu_seconds, before.cost + value.cost)
    return rolled


def parse_window(text: str) -> float:
    """`7d`, `12h`, `30m`, `90s` -> seconds; ValueError with the accepted forms otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    body, unit = text.strip()[:-1], text.strip()[-1:]
    if unit not in units or not body.isdigit() or int(body) <= 0:
        raise ValueError(f"{text!r} is not a window like 7d, 12h, 30m (units: s, m, h, d, w)")
    return float(int(body) * units[unit])


PODS_NOTE = ("from the pods in the cluster now (their start/end times): pods already deleted are missing; "
             "set api.prometheusUrl to report from the accel_gpu_seconds_total counters instead")
PROMETHEUS_NOTE = (
    "from Prometheus: increase() of accel_gpu_seconds_total and accel_gpu_cost_total over the window"
)


def usage_report(rolled: Mapping[tuple[str, str], Usage], *, window: str, window_s: float, source: str,
                 teams: frozenset[str] | None = None, currency: str = "USD") -> dict[str, Any]:
    """The JSON shape of `GET /api/usage` and `accel usage -o json` (rows sorted by team, type);
    `teams` limits the rows to those teams (None: all)."""
    rows: list[dict[str, Any]] = [
        {
            "team": team,
            "type": accel_type,
            "gpuHours": round(value.gpu_seconds / 3600.0, 4),
            "cost": round(value.cost, 4),
        }
        for (team, accel_type), value in sorted(rolled.items())
        if (teams is None or team in teams) and value.gpu_seconds > 0
    ]
    return {"window": window, "windowSeconds": window_s, "source": source,
            "note": PROMETHEUS_NOTE if source == "prometheus" else PODS_NOTE,
            "currency": currency, "rows": rows,
            "totals": {"gpuHours": round(sum(float(r["gpuHours"]) for r in rows), 4),
                       "cost": round(sum(float(r["cost"]) for r in rows), 4)}}


def usage_from_pods(
    pods: Iterable[Mapping[str, Any]],
    *,
    policy: Policy,
    catalog: Catalog,
    inventory: Inventory,
    window_s: float,
    now: float,
) -> dict[tuple[str, str], Usage]:
    """(team, type) usage over [now - window_s, now) of the pods given (no history beyond them)."""
    charges = [
        c
        for p in pods
        if (c := pod_charge(p, policy=policy, catalog=catalog, inventory=inventory)) is not None
    ]
    return by_team_and_type(usage_between(charges, now - window_s, now))
