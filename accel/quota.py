"""Team quota: pure math over GPU-equivalents plus the reservation ledger model.

Quota is written per team in GPU-equivalents per canonical type and for all types together ("*")
(design.md, "Policy"). Amounts are exact `Fraction`s: a time-sliced replica is 1/replicas, a MIG
slice g/max_g (accel.usage).

What counts as used (invariants):
1. Usage = bound and pending non-terminal pods from the watch (`accel.inventory.team_usage`) plus
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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson

from accel.policy import ALL_TYPES, Team

RESERVATION_ANNOTATION = "accel.dev/reservation"
LEDGER_NAME = "accel-quota-ledger"
LEDGER_KEY = "ledger.json"

Usage = Mapping[str, Fraction]  # canonical type -> GPU-equivalents


@dataclass(frozen=True, slots=True)
class Reservation:
    """GPU-equivalents held for one admitted pod until the watch shows it."""

    id: str
    team: str
    type: str
    amount: Fraction
    namespace: str = ""
    created: float = 0.0
    expires: float = 0.0
    replica: str = ""
    job: str = ""  # the pod's job label value (accel.admission_jobs), "" = none

    def to_json(self) -> dict[str, Any]:
        data = {
            "team": self.team,
            "type": self.type,
            "amount": str(self.amount),
            "namespace": self.namespace,
            "created": self.created,
            "expires": self.expires,
            "replica": self.replica,
        }
        if self.job:
            data["job"] = self.job
        return data

    @classmethod
    def from_json(cls, rid: str, data: Mapping[str, Any]) -> Reservation:
        return cls(
            id=rid,
            team=str(data["team"]),
            type=str(data["type"]),
            amount=Fraction(str(data["amount"])),
            namespace=str(data.get("namespace", "")),
            created=float(data.get("created", 0.0)),
            expires=float(data.get("expires", 0.0)),
            replica=str(data.get("replica", "")),
            job=str(data.get("job", "")),  # absent in documents written before jobs were recorded
        )


@dataclass(frozen=True, slots=True)
class Ledger:
    """All live reservations by id; `corrupt` marks a stored document we could not read.

    `raw` keeps each reservation's JSON form so writing a ledger back costs one C-level dump,
    not one Python dict per reservation (the hot path writes it on every admission).
    """

    reservations: Mapping[str, Reservation] = field(default_factory=dict)
    corrupt: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Ledger:
        """Parse the ConfigMap data; an unreadable document becomes an empty ledger marked corrupt.

        Reservations are short-lived and the watch still counts every real pod, so starting over
        loses at most one TTL of in-flight admissions instead of blocking all admissions.
        """
        raw = data.get(LEDGER_KEY)
        if not raw:
            return cls()
        try:
            entries = orjson.loads(raw)["reservations"]
            return cls({rid: Reservation.from_json(rid, entry) for rid, entry in entries.items()}, raw=entries)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
            return cls(corrupt=True)

    def _raw_of(self, rid: str) -> Any:
        found = self.raw.get(rid)
        return found if found is not None else self.reservations[rid].to_json()

    def to_data(self) -> dict[str, str]:
        document = {"reservations": {rid: self._raw_of(rid) for rid in self.reservations}}
        return {LEDGER_KEY: orjson.dumps(document).decode()}

    def pruned(self, *, now: float, visible: frozenset[str]) -> Ledger:
        """Without expired reservations and those whose pod the watch already shows (invariant 2)."""
        kept = {rid: r for rid, r in self.reservations.items() if r.expires > now and rid not in visible}
        if len(kept) == len(self.reservations) and not self.corrupt:
            return self
        return Ledger(kept, raw={rid: self.raw[rid] for rid in kept if rid in self.raw})

    def with_reservation(self, reservation: Reservation) -> Ledger:
        raw = {**self.raw, reservation.id: reservation.to_json()}
        return Ledger({**self.reservations, reservation.id: reservation}, raw=raw)


def team_usage_now(
    team: str,
    base: Mapping[str, Usage],
    ledger: Ledger,
    *,
    visible: frozenset[str],
    now: float,
    exclude: str | None = None,
) -> dict[str, Fraction]:
    """One team's usage per type: the watch plus live, not-yet-visible reservations (invariant 1)."""
    usage = dict(base.get(team, {}))
    # Sum numerators per (type, denominator) with ints: Fraction additions are slow in a hot loop.
    partial: dict[tuple[str, int], int] = {}
    for rid, reservation in ledger.reservations.items():
        if reservation.team == team and rid != exclude and reservation.expires > now and rid not in visible:
            key = (reservation.type, reservation.amount.denominator)
            partial[key] = partial.get(key, 0) + reservation.amount.numerator
    for (accel_type, denominator), numerator in partial.items():
        usage[accel_type] = usage.get(accel_type, Fraction(0)) + Fraction(numerator, denominator)
    return usage


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
    return None if amount is None else Fraction(str(amount))


def check_quota(team: Team, accel_type: str, amount: Fraction, usage: Usage) -> list[QuotaExcess]:
    """Every quota line (the type's, then "*") that `amount` more of `accel_type` would overrun."""
    excess: list[QuotaExcess] = []
    for key in (accel_type, ALL_TYPES):
        limit = limit_of(team, key)
        if limit is None or (key == ALL_TYPES and key == accel_type):
            continue
        used = sum(usage.values(), Fraction(0)) if key == ALL_TYPES else usage.get(key, Fraction(0))
        if used + amount > limit:
            excess.append(QuotaExcess(team.name, key, limit, used, amount))
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
