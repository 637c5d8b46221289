"""Team quota: pure math over GPU-equivalents; the reservation ledger model is accel.quota.ledger.

Quota is written per team in GPU-equivalents per canonical type and for all types together ("*")
(design.md, "Policy"). Amounts are exact `Fraction`s: a time-sliced replica is 1/replicas, a MIG
slice g/max_g (accel.cluster.gpu_equivalents).

Who decides the type, and when quota is charged and freed (invariants):
1. Usage = bound and pending non-terminal pods from the watch (`accel.capacity.inventory.team_usage`) plus
   live ledger entries the watch does not account for yet. A pending pod whose type is not fixed
   yet (a multi-type or generic profile with more than one candidate) counts as the undecided
   type "" (UNDECIDED): only the "*" quota sees it. Its type is fixed where the capacity is, at
   bind (extender/app.py), which checks the type's quota and converts the pod with a `bound/<uid>`
   ledger entry: +amount on the bound type, -amount on "" (a move, never a second count).
2. An admission reservation is keyed to the REAL pod: its uid, which the API server assigns before
   validating admission (the validating webhook sees it; the mutating one does not). Nothing the
   pod's author writes (no annotation) is ever used as, or to exclude, a reservation id. A
   reservation is consumed as soon as the replica's watch has shown its pod (present, or seen and
   since deleted: `visible`); a bind conversion as soon as the watch shows the pod bound or
   deleted. So a pod counts exactly once from admission to deletion, and its quota is free again
   the moment the watch shows it deleted.
3. A reservation whose pod never appears (a later admission step rejected it: a ResourceQuota,
   another webhook) is released after a short grace once the API server confirms the pod does not
   exist (webhook/reconcile.py); `reservation_ttl_seconds` is only the hard upper bound. dryRun
   requests never reserve. A consumed entry stays in the document (not counted by a writer whose
   watch shows its pod) until every live writer's watch shows the pod (invariant 6).
4. A decision never counts the request's own entry twice: its id is left out of usage before
   checking, then upserted (an API server retry of the same admission does not double-charge).
5. The ledger is one JSON document (ConfigMap `accel-quota-ledger`, key `ledger.json`) written only
   with compare-and-swap on its resourceVersion (serving/ledger.py), by every webhook replica and
   the extender, so two writers never both take the last free GPU of a quota line.
6. Retention (accel.quota.ledger rules 4-6): each write registers its writer's pod-watch watermark
   (resourceVersion); an entry is stamped with the first watermark whose snapshot shows its pod and
   dropped once every live registered writer has passed the stamp, raising the document's `floor`.
   A decision is only made from a snapshot at or past `floor` (else it is refused as `behind`, to be
   retried when the watch has caught up), so a dropped entry's pod is always in the deciding
   watch: a replica whose watch lags counts the pod once (entry) or once (watch), never zero times,
   whatever the lag. The document holds what is in flight, not the admission rate x a settle time.
   SETTLE_S only remains for snapshots without a watermark (a static state, no watch).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from accel.policy.models import ALL_TYPES, Team
from accel.quota.ledger import Ledger, Reservation, contributions

RESERVATION_ANNOTATION = "accel.dev/reservation"  # no longer written nor read (invariant 2); kept for docs
LEDGER_NAME = "accel-quota-ledger"
SETTLE_S = 30.0  # invariant 6: how long an entry is kept after a snapshot without a watermark shows it
UNDECIDED = ""  # the type of a pending pod whose type the bind will fix (invariant 1)
BOUND_PREFIX = "bound/"


def bound_id(pod_uid: str) -> str:
    """The ledger id of the bind conversion of the pod `pod_uid` (invariant 1)."""
    return BOUND_PREFIX + pod_uid

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
        if own is not None and own.team == team and own.id not in ledger.consumed:  # consumed: not in totals
            _discount(partial, own)
    else:
        partial = {}
        for rid, reservation in ledger.reservations.items():
            if (
                reservation.team == team
                and rid != exclude
                and reservation.expires > now
                and rid not in visible
            ):
                for accel_type, amount in contributions(reservation):
                    key = (accel_type, amount.denominator)
                    count, numerator = partial.get(key, (0, 0))
                    partial[key] = (count + 1, numerator + amount.numerator)
    for (accel_type, denominator), (_, numerator) in partial.items():
        usage[accel_type] = usage.get(accel_type, Fraction(0)) + Fraction(numerator, denominator)
    return usage


def _discount(partial: dict[tuple[str, int], tuple[int, int]], reservation: Reservation) -> None:
    """Take one entry out of (type, denominator) -> (count, numerator) sums."""
    for accel_type, amount in contributions(reservation):
        key = (accel_type, amount.denominator)
        count, numerator = partial[key]
        if count > 1:
            partial[key] = (count - 1, numerator - amount.numerator)
        else:
            del partial[key]


@dataclass(frozen=True, slots=True)
class QuotaExcess:
    """One quota line a request would overrun: `used + requested > limit` on `key` (type or "*")."""

    team: str
    key: str
    limit: Fraction
    used: Fraction  # in use (the watch) plus `reserved`
    requested: Fraction
    reserved: Fraction = Fraction(0)  # of `used`: held by admissions and binds in flight (the ledger)

    @property
    def would_use(self) -> Fraction:
        return self.used + self.requested


def limit_of(team: Team, key: str) -> Fraction | None:
    amount = team.quota.get(key)
    return None if amount is None else _exact(amount)


@functools.lru_cache(maxsize=1024)  # a policy has a few dozen distinct quota numbers
def _exact(amount: Decimal | int | str) -> Fraction:
    return (
        Fraction(amount) if isinstance(amount, Decimal) else Fraction(str(amount))
    )  # Decimal: exact, no text round trip


def ratio_sum(values: Iterable[Fraction]) -> tuple[int, int]:
    """(numerator, denominator) of the sum, unreduced: integer products instead of Fraction adds."""
    numerator, denominator = 0, 1
    for value in values:
        numerator = numerator * value.denominator + value.numerator * denominator
        denominator *= value.denominator
    return numerator, denominator


def check_quota(
    team: Team,
    accel_type: str,
    amount: Fraction,
    usage: Usage,
    *,
    keys: tuple[str, ...] | None = None,
    in_use: Usage | None = None,
) -> list[QuotaExcess]:
    """Every quota line (the type's, then "*"; or only `keys`) that `amount` more of `accel_type`
    would overrun. `in_use` (the watch's share of `usage`) splits each excess into in use and reserved."""
    excess: list[QuotaExcess] = []
    for key in keys if keys is not None else (accel_type, ALL_TYPES):
        limit = limit_of(team, key)
        if limit is None or (key == ALL_TYPES and key == accel_type) or key == UNDECIDED:
            continue
        num, den = ratio_sum(usage.values() if key == ALL_TYPES else (usage.get(key, Fraction(0)),))
        # used + amount > limit, cross-multiplied (all denominators are positive): exact, no Fraction math
        if (
            num * amount.denominator + amount.numerator * den
        ) * limit.denominator > limit.numerator * den * amount.denominator:
            used = Fraction(num, den)
            reserved = used - _line(in_use, key) if in_use is not None else Fraction(0)
            excess.append(QuotaExcess(team.name, key, limit, used, amount, reserved))
    return excess


def _line(usage: Usage, key: str) -> Fraction:
    return sum(usage.values(), Fraction(0)) if key == ALL_TYPES else usage.get(key, Fraction(0))


def type_room(team: Team, accel_type: str, amount: Fraction, usage: Usage) -> QuotaExcess | None:
    """None when `amount` more of `accel_type` fits the type's own quota line (the "*" line is
    checked at admission, where the pod is already counted as undecided), else the excess."""
    found = check_quota(team, accel_type, amount, usage, keys=(accel_type,))
    return found[0] if found else None


def has_type_quota(team: Team, types: Iterable[str]) -> bool:
    return any(t in team.quota for t in types)


def is_restricted(team: Team | None) -> bool:
    """Whether a generic pod of `team` must be narrowed to concrete types (accel.admission.generic
    rule 1): the team names allowed types or has a quota on some single type."""
    return team is not None and (
        team.allowed_types is not None or any(key != ALL_TYPES for key in team.quota)
    )


@dataclass(frozen=True, slots=True)
class ReservationOutcome:
    """`ledger` is the document to write (None: nothing to write); `excess` non-empty = denied."""

    ledger: Ledger | None
    excess: tuple[QuotaExcess, ...] = ()
    usage: Mapping[str, Fraction] = field(default_factory=dict)
    behind: tuple[int | None, int] | None = None  # invariant 6: (snapshot watermark, floor), not decided


def tidied(ledger: Ledger, *, now: float, visible: frozenset[str], watermark: int | None) -> Ledger:
    """The ledger a tidy or registration write stores (invariants 3, 6): expired entries gone, the
    entries this snapshot shows stamped with its watermark, and those every live writer's watch
    shows dropped (a full pass: no memo shortcut)."""
    return ledger.pruned(now=now, visible=visible, watermark=watermark, settle_s=SETTLE_S, full=True)


def decide_reservation(
    ledger: Ledger,
    reservation: Reservation,
    *,
    team: Team,
    base: Mapping[str, Usage],
    visible: frozenset[str],
    now: float,
    commit: bool = True,
    candidates: Mapping[str, Fraction] | None = None,
    watermark: int | None = None,
) -> ReservationOutcome:
    """Check `reservation` against the team's quota; on room (and `commit`) return the new ledger.

    `candidates` (type -> amount on it) is for an undecided reservation: besides the "*" line, at
    least one candidate must have room on its own type line (else every candidate's excess is
    reported). `usage` in the outcome is the team's usage before this request (messages, metrics).
    `watermark` is the snapshot's pod-watch watermark (invariant 6): a committing decision from a
    snapshot behind the ledger's floor is not made (`behind`); a read-only one is only advisory.
    """
    if commit and ledger.behind(watermark):
        return ReservationOutcome(None, behind=(watermark, ledger.floor))
    pruned = ledger.pruned(now=now, visible=visible, watermark=watermark, settle_s=SETTLE_S)
    usage = team_usage_now(team.name, base, pruned, visible=visible, now=now, exclude=reservation.id)
    in_use = base.get(team.name, {})
    excess = check_quota(team, reservation.type, reservation.amount, usage, in_use=in_use)
    if not excess and candidates:
        per_type = [
            check_quota(team, t, amount, usage, keys=(t,), in_use=in_use) for t, amount in candidates.items()
        ]
        if all(per_type):
            excess = [found[0] for found in per_type]
    if excess or not commit:
        return ReservationOutcome(None, tuple(excess), usage)
    return ReservationOutcome(pruned.with_reservation(reservation), (), usage)


Seen = Mapping[str, tuple[float, bool]]  # pod uid -> (last time the watch showed it, bound then)


def watch_ids(
    pods: Iterable[tuple[str, bool]],
    previous: Seen,
    *,
    now: float,
    keep_s: float,
    deleted: frozenset[str] = frozenset(),
) -> tuple[frozenset[str], dict[str, tuple[float, bool]]]:
    """The ledger ids the watch accounts for (invariant 2), and the new `Seen` memo.

    `pods` are (uid, bound) of the pods the watch shows now. A pod the watch showed earlier and
    no longer shows was deleted (or finished): its reservation and bind conversion are consumed
    too, so its quota is free the moment it is gone. Gone pods are remembered `keep_s` seconds
    (at least the reservation TTL: no entry of theirs can outlive that).

    `deleted` are uids the watch showed deleted (a DELETED event, or gone at a relist) lately,
    whether or not a view ever showed them present: a pod created and force-deleted between two
    views (issue 21) is gone just the same, so its entries are consumed at once instead of after
    the reconciler's grace. The caller keeps them (serving.cluster_state rule 5), so they do not
    enter the memo. Exact: a uid names one pod object and is never reused, so a deleted uid's
    entries belong to no pod that still exists; should the watch show one anyway, it stays that
    pod (an unbound one keeps its bind conversion counted).
    """
    seen: dict[str, tuple[float, bool]] = {}
    ids: set[str] = set()
    shown_unbound: list[str] = []  # unbound pods whose uid is also in `deleted` (never, by uniqueness)
    for uid, bound in pods:
        if not uid:
            continue
        seen[uid] = (now, bound)
        ids.add(uid)
        if bound:
            ids.add(BOUND_PREFIX + uid)
        elif uid in deleted:
            shown_unbound.append(uid)
    for uid, (when, bound) in previous.items():
        if uid not in seen and now - when <= keep_s:
            seen[uid] = (when, bound)
            ids.add(uid)
            ids.add(BOUND_PREFIX + uid)
    if not deleted:
        return frozenset(ids), seen
    visible = _gone_ids(deleted).union(ids)
    if shown_unbound:
        visible = visible.difference(BOUND_PREFIX + uid for uid in shown_unbound)
    return visible, seen


@functools.lru_cache(maxsize=4)  # the same set object per cluster-state change: built once, not per view
def _gone_ids(deleted: frozenset[str]) -> frozenset[str]:
    """Every ledger id of the deleted pods `deleted`: their reservations and bind conversions."""
    return deleted.union(map(BOUND_PREFIX.__add__, deleted))
