"""Team quota: pure math over GPU-equivalents; the reservation ledger model is accel.quota.ledger.

Quota is written per team in GPU-equivalents per canonical type and for all types together ("*")
(design.md, "Policy"). Amounts are exact `Fraction`s: a time-sliced replica is 1/replicas, a MIG
slice g/max_g (accel.cluster.gpu_equivalents).

What counts as used (invariants):
1. Usage = bound and pending non-terminal pods from the watch (`accel.capacity.inventory.team_usage`) plus
   live ledger reservations whose pod the watch does not show yet. A reservation is matched to its
   pod by the id the mutating webhook wrote into the pod's `accel.dev/reservation` annotation, never
   by pod name (generateName pods have none at mutate time), so a pod visible in the watch AND
   still in the ledger counts exactly once.
2. A reservation expires `reservation_ttl_seconds` after it was made (the pod never appeared:
   denied by a later webhook, dry-run client, deleted). Expired and watch-visible reservations are
   dropped whenever a replica writes the ledger.
3. A decision never counts the request's own reservation twice: its id is left out of usage before
   checking, then upserted (an API server retry of the same admission does not double-charge).
4. The ledger is one JSON document (ConfigMap `accel-quota-ledger`, key `ledger.json`) written only
   with compare-and-swap on its resourceVersion (webhook/ledger.py), so two replicas never both
   admit into the last free GPU.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from accel.policy.models import ALL_TYPES, Team
from accel.quota.ledger import (
    Ledger,
    Reservation,
)

RESERVATION_ANNOTATION = "accel.dev/reservation"
LEDGER_NAME = "accel-quota-ledger"

Usage = Mapping[str, Fraction]  # canonical type -> GPU-equivalents


def team_usage_now(
    team: str,
    base: Mapping[str, Usage],
    ledger: Ledger,
    *,
    visible: frozenset[str],
    now: float,
    exclude: str | None = None,
) -> dict[str, Fraction]:
    """One team's usage per type: the watch plus live, not-yet-visible reservations (invariant 1).

    Over a ledger already clean for (`now`, `visible`) this reads the ledger's per-team totals
    (accel.quota.ledger rule 3) instead of walking every reservation; the result is the same.
    """
    usage = dict(base.get(team, {}))
    # Sum numerators per (type, denominator) with ints: Fraction additions are slow in a hot loop.
    partial: dict[tuple[str, int], tuple[int, int]]
    if ledger.is_clean(now=now, visible=visible) and ledger.totals is not None:
        partial = dict(ledger.totals.get(team, {}))
        own = ledger.reservations.get(exclude) if exclude is not None else None
        if own is not None and own.team == team:
            _discount(partial, own)
    else:
        partial = {}
        for rid, reservation in ledger.reservations.items():
            if reservation.team == team and rid != exclude and reservation.expires > now and rid not in visible:
                key = (reservation.type, reservation.amount.denominator)
                count, numerator = partial.get(key, (0, 0))
                partial[key] = (count + 1, numerator + reservation.amount.numerator)
    for (accel_type, denominator), (_, numerator) in partial.items():
        usage[accel_type] = usage.get(accel_type, Fraction(0)) + Fraction(numerator, denominator)
    return usage


def _discount(partial: dict[tuple[str, int], tuple[int, int]], reservation: Reservation) -> None:
    """Take one reservation out of (type, denominator) -> (count, numerator) sums."""
    key = (reservation.type, reservation.amount.denominator)
    count, numerator = partial[key]
    if count > 1:
        partial[key] = (count - 1, numerator - reservation.amount.numerator)
    else:
        del partial[key]


@dataclass(frozen=True, slots=True)
class QuotaExcess:
    """One quota line a request would overrun: `used + requested > limit` on `key` (type or "*")."""

    team: str
    key: str
    limit: Fraction
    used: Fraction
    requested: Fraction

    @property
    def would_use(self) -> Fraction:
        return self.used + self.requested


def limit_of(team: Team, key: str) -> Fraction | None:
    amount = team.quota.get(key)
    return None if amount is None else _exact(amount)


@functools.lru_cache(maxsize=1024)  # a policy has a few dozen distinct quota numbers
def _exact(amount: Decimal | int | str) -> Fraction:
    return Fraction(amount) if isinstance(amount, Decimal) else Fraction(str(amount))  # Decimal: exact, no text round trip


def ratio_sum(values: Iterable[Fraction]) -> tuple[int, int]:
    """(numerator, denominator) of the sum, unreduced: integer products instead of Fraction adds."""
    numerator, denominator = 0, 1
    for value in values:
        numerator = numerator * value.denominator + value.numerator * denominator
        denominator *= value.denominator
    return numerator, denominator


def check_quota(team: Team, accel_type: str, amount: Fraction, usage: Usage) -> list[QuotaExcess]:
    """Every quota line (the type's, then "*") that `amount` more of `accel_type` would overrun."""
    excess: list[QuotaExcess] = []
    for key in (accel_type, ALL_TYPES):
        limit = limit_of(team, key)
        if limit is None or (key == ALL_TYPES and key == accel_type):
            continue
        num, den = ratio_sum(usage.values() if key == ALL_TYPES else (usage.get(key, Fraction(0)),))
        # used + amount > limit, cross-multiplied (all denominators are positive): exact, no Fraction math
        if (num * amount.denominator + amount.numerator * den) * limit.denominator > limit.numerator * den * amount.denominator:
            excess.append(QuotaExcess(team.name, key, limit, Fraction(num, den), amount))
    return excess


def has_type_quota(team: Team, types: Iterable[str]) -> bool:
    return any(t in team.quota for t in types)


def choose_quota_type(
    team: Team,
    candidates: Iterable[str],
    amount_of: Mapping[str, Fraction],
    usage: Usage,
    *,
    free_units: Mapping[str, int],
    units: int,
) -> str:
    """The type a multi-type request is charged to: the first type in preference order with quota
    room and free devices in the cluster, else the first with quota room, else the first."""
    ordered = list(candidates)
    room = [t for t in ordered if not check_quota(team, t, amount_of[t], usage)]
    ready = [t for t in room if free_units.get(t, 0) >= units]
    return (ready or room or ordered)[0]


@dataclass(frozen=True, slots=True)
class ReservationOutcome:
    """`ledger` is the document to write (None: nothing to write); `excess` non-empty = denied."""

    ledger: Ledger | None
    excess: tuple[QuotaExcess, ...] = ()
    usage: Mapping[str, Fraction] = field(default_factory=dict)


def decide_reservation(
    ledger: Ledger,
    reservation: Reservation,
    *,
    team: Team,
    base: Mapping[str, Usage],
    visible: frozenset[str],
    now: float,
    commit: bool = True,
) -> ReservationOutcome:
    """Check `reservation` against the team's quota; on room (and `commit`) return the new ledger.

    `usage` in the outcome is the team's usage before this request (for messages and metrics).
    """
    pruned = ledger.pruned(now=now, visible=visible)
    usage = team_usage_now(team.name, base, pruned, visible=visible, now=now, exclude=reservation.id)
    excess = check_quota(team, reservation.type, reservation.amount, usage)
    if excess or not commit:
        return ReservationOutcome(None, tuple(excess), usage)
    return ReservationOutcome(pruned.with_reservation(reservation), (), usage)
