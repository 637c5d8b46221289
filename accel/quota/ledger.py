"""The reservation ledger model (accel.quota.rules invariants 1-4) with O(1) work per admission.

The webhook writes the ledger on every GPU admission, so each step an admission takes on it
must not walk every reservation (the ledger holds every pod admitted in the last watch period):
1. `to_data` joins each reservation's pre-encoded JSON member (`"id":{...}`, encoded once when
   the reservation is added or the document parsed) into the exact text
   `orjson.dumps({"reservations": {id: entry, ...}})` would give, without re-encoding.
2. `pruned(now=, visible=)` is O(1) when the ledger is already known clean for that `visible`
   set (the same frozenset object: one per state generation) and nothing can have expired
   (`now < earliest_expiry`); otherwise one pass, after which the result is known clean.
3. Per team, live amounts are kept as integer numerators per (type, denominator), updated on
   every add, so `accel.quota.rules.team_usage_now` over a clean ledger costs O(types), not
   O(reservations), and stays exact (no float, no repeated Fraction addition).
The memo fields (`members`, `totals`, `clean_for`, `earliest_expiry`) are derived data: they never
take part in equality, and a `Ledger(...)` built without them computes them.

Two kinds of entries (accel.quota invariant 1): an admission reservation (`stage` "admitted",
id = the pod's uid) and a bind conversion (`stage` "bound", id = `bound/<uid>`) that moves
`undecided` GPU-equivalents off the undecided type ("") onto the type the pod was bound to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson

LEDGER_KEY = "ledger.json"

# team -> (type, denominator) -> (live reservations, sum of numerators)
Totals = Mapping[str, Mapping[tuple[str, int], tuple[int, int]]]


ADMITTED = "admitted"
BOUND = "bound"


@dataclass(frozen=True, slots=True)
class Reservation:
    """GPU-equivalents held for one pod until the watch shows it (see module docstring)."""

    id: str
    team: str
    type: str  # "" = undecided: counts only against the "*" quota until the bind fixes the type
    amount: Fraction
    namespace: str = ""
    created: float = 0.0
    expires: float = 0.0
    replica: str = ""
    job: str = ""  # the pod's job label value (accel.admission.jobs), "" = none
    name: str = ""  # the pod's name, to ask the API server whether it exists (webhook/reconcile.py)
    stage: str = ADMITTED
    undecided: Fraction = Fraction(0)  # stage "bound": what leaves the undecided type ("")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
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
        if self.name:
            data["name"] = self.name
        if self.stage != ADMITTED:
            data["stage"] = self.stage
        if self.undecided:
            data["undecided"] = str(self.undecided)
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
            name=str(data.get("name", "")),
            stage=str(data.get("stage", ADMITTED)),
            undecided=Fraction(str(data.get("undecided", "0"))),
        )


def _member(rid: str, entry: Mapping[str, Any]) -> str:
    """One member of the reservations object, as orjson writes it inside the whole document (as
    text: the ConfigMap value is a str, so the join needs no decode of the whole document)."""
    return (orjson.dumps(rid) + b":" + orjson.dumps(entry)).decode()


def contributions(reservation: Reservation) -> tuple[tuple[str, Fraction], ...]:
    """(type, GPU-equivalents) a live entry adds to its team's usage: its amount on its type and,
    for a bind conversion, minus `undecided` on the undecided type (the pod moves, it is not added)."""
    if reservation.undecided:
        return ((reservation.type, reservation.amount), ("", -reservation.undecided))
    return ((reservation.type, reservation.amount),)


def _add(totals: dict[tuple[str, int], tuple[int, int]], reservation: Reservation, sign: int) -> None:
    for accel_type, amount in contributions(reservation):
        key = (accel_type, amount.denominator)
        count, numerator = totals.get(key, (0, 0))
        count, numerator = count + sign, numerator + sign * amount.numerator
        if count:
            totals[key] = (count, numerator)
        else:
            totals.pop(key, None)


def _totals(reservations: Iterable[Reservation]) -> dict[str, dict[tuple[str, int], tuple[int, int]]]:
    totals: dict[str, dict[tuple[str, int], tuple[int, int]]] = {}
    for reservation in reservations:
        _add(totals.setdefault(reservation.team, {}), reservation, 1)
    return totals


@dataclass(frozen=True, slots=True)
class Ledger:
    """All live reservations by id; `corrupt` marks a stored document we could not read.

    Memo (rules 2-3): when `clean_for` is a visible set, `settling` is exactly the entries that set
    shows (kept only for SETTLE_S, not counted), `totals` sums every other entry, and
    `earliest_expiry` is the first expiry among those counted ones.
    """

    reservations: Mapping[str, Reservation] = field(default_factory=dict)
    corrupt: bool = False
    members: Mapping[str, str] | None = field(default=None, compare=False, repr=False)
    totals: Totals | None = field(default=None, compare=False, repr=False)
    clean_for: frozenset[str] | None = field(default=None, compare=False, repr=False)
    earliest_expiry: float | None = field(default=None, compare=False, repr=False)
    settling: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.members is None:
            members = {rid: _member(rid, r.to_json()) for rid, r in self.reservations.items()}
            object.__setattr__(self, "members", members)
        if self.totals is None:
            counted = (r for rid, r in self.reservations.items() if rid not in self.settling)
            object.__setattr__(self, "totals", _totals(counted))
        if self.earliest_expiry is None:
            earliest = min(
                (r.expires for rid, r in self.reservations.items() if rid not in self.settling),
                default=float("inf"),
            )
            object.__setattr__(self, "earliest_expiry", earliest)

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
            parsed = {rid: Reservation.from_json(rid, entry) for rid, entry in entries.items()}
            return cls(parsed, members={rid: _member(rid, entry) for rid, entry in entries.items()})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
            return cls(corrupt=True)

    def to_data(self) -> dict[str, str]:
        """The ConfigMap data (rule 1: one join of the encoded members)."""
        assert self.members is not None
        return {LEDGER_KEY: "".join(('{"reservations":{', ",".join(self.members.values()), "}}"))}

    def is_clean(self, *, now: float, visible: frozenset[str]) -> bool:
        """True when the memo is exact for (`now`, `visible`): `totals` then counts exactly the
        entries neither expired nor shown by `visible` (rule 2, no walk)."""
        assert self.earliest_expiry is not None
        return self.clean_for is visible and now < self.earliest_expiry and not self.corrupt

    def pruned(self, *, now: float, visible: frozenset[str], settle_s: float = 0.0) -> Ledger:
        """Without expired entries and those whose pod the watch already shows (invariant 2) since
        at least `settle_s` (the entry's age: another replica's watch may lag this one's, and must
        not see the pod in neither the ledger nor its watch).

        A ledger already clean for (`now`, `visible`) is returned as it is: entries whose settling
        time ran out meanwhile do not count either way, and the next full pass (a new `visible`
        set: at most one per state generation) or the reconciler's tidy drops them. So a run of
        decisions between two generations does no walk at all."""
        if self.is_clean(now=now, visible=visible):
            return self
        settled = now - settle_s
        kept = {
            rid: r
            for rid, r in self.reservations.items()
            if r.expires > now and (rid not in visible or r.created > settled)
        }
        settling = frozenset(rid for rid in kept if rid in visible)
        assert self.members is not None
        members = (
            self.members if len(kept) == len(self.reservations) else {rid: self.members[rid] for rid in kept}
        )
        return Ledger(
            kept if len(kept) != len(self.reservations) else self.reservations,
            members=members,
            clean_for=visible,
            settling=settling,
        )

    def without(self, ids: Iterable[str]) -> Ledger:
        """This ledger less the entries `ids` (those absent are ignored); self when none is present.
        The memo stays exact (removed counted entries leave `totals`), so no walk follows."""
        gone = {rid for rid in ids if rid in self.reservations}
        if not gone:
            return self
        assert self.members is not None and self.totals is not None
        kept = {rid: r for rid, r in self.reservations.items() if rid not in gone}
        members = {rid: self.members[rid] for rid in kept}
        if self.clean_for is None:
            return Ledger(kept, members=members)
        totals = {team: dict(lines) for team, lines in self.totals.items()}
        for rid in gone:
            if rid not in self.settling:
                reservation = self.reservations[rid]
                _add(totals.setdefault(reservation.team, {}), reservation, -1)
        return Ledger(
            kept, members=members, totals=totals, clean_for=self.clean_for, settling=self.settling - gone
        )

    def with_reservation(self, reservation: Reservation) -> Ledger:
        """This ledger plus (or with a replaced) `reservation`; memo fields updated, not rebuilt.
        An entry the memo's visible set already shows joins `settling` (the watch counts its pod)."""
        assert self.members is not None and self.totals is not None and self.earliest_expiry is not None
        rid = reservation.id
        totals: dict[str, Mapping[tuple[str, int], tuple[int, int]]] = dict(self.totals)
        settling = self.settling
        previous = self.reservations.get(rid)
        if previous is not None:  # an upsert: the old amount leaves its team's totals
            if rid in settling:
                settling = settling - {rid}
            else:
                old = dict(totals.get(previous.team, {}))
                _add(old, previous, -1)
                totals[previous.team] = old
        earliest = self.earliest_expiry
        if self.clean_for is not None and rid in self.clean_for:
            settling = settling | {rid}
        else:
            mine = dict(totals.get(reservation.team, {}))
            _add(mine, reservation, 1)
            totals[reservation.team] = mine
            earliest = min(earliest, reservation.expires)
        return Ledger(
            {**self.reservations, rid: reservation},
            members={**self.members, rid: _member(rid, reservation.to_json())},
            totals=totals,
            clean_for=self.clean_for,
            earliest_expiry=earliest,
            settling=settling,
        )
