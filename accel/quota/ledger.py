"""The reservation ledger model (accel.quota.rules invariants 1-6) with O(1) work per admission.

The webhook writes the ledger on every GPU admission, so each step an admission takes on it
must not walk every reservation (the ledger holds every pod admitted and not yet shown by every
writer's watch):
1. `to_data` joins each reservation's pre-encoded JSON member (`"id":{...}`, encoded once when
   the reservation is added or the document parsed) into the exact text
   `orjson.dumps({"reservations": {id: entry, ...}})` would give, without re-encoding.
2. `pruned(now=, visible=)` is O(1) when the ledger is already known clean for that `visible`
   set (the same frozenset object: one per state generation) and nothing can have expired
   (`now < earliest_expiry`); otherwise one pass, after which the result is known clean.
3. Per team, live amounts are kept as integer numerators per (type, denominator), updated on
   every add, so `accel.quota.rules.team_usage_now` over a clean ledger costs O(types), not
   O(reservations), and stays exact (no float, no repeated Fraction addition).
The memo fields (`members`, `totals`, `clean_for`, `earliest_expiry`, `consumed`) are derived data:
they never take part in equality, and a `Ledger(...)` built without them computes them.

Retention by watch watermarks (accel.quota.rules invariant 6; the pod watch's resourceVersions,
integers on every etcd-backed API server, are the watermarks):
4. A writer (webhook replica process, extender) decides with a snapshot of its pod watch taken at
   watermark `w`: the snapshot reflects every pod change up to `w`. When that snapshot shows an
   entry's pod (present, bound for a conversion, or seen and since gone), `pruned` stamps the entry
   `seen = w` (the smallest stamp wins). Whatever shows it at `w` shows it at every later watermark:
   a pod once created is present or deleted, a bound pod stays bound, a deleted uid never returns.
5. Each write registers its writer in `writers` (the watermark of its decisions' snapshots, and the
   time). A stamped entry is dropped once `seen <= horizon`, the smallest watermark of the writers
   registered less than WRITER_LIVE_S ago and of the writer pruning (who registers it with the
   same write); `floor` is raised to the largest stamp ever dropped.
6. A decision whose snapshot watermark is below `floor` is not made (`behind`): its snapshot might
   miss a pod whose entry is gone. Every decision made has `w >= floor >= seen` of every dropped
   entry, so its watch shows that pod (counted, or gone): dropping never loses a count, however
   far any watch lags. A live registered writer is never behind (its snapshots only move forward,
   and `floor <= horizon <=` its registration); a writer silent past WRITER_LIVE_S stops holding
   entries back and, when it decides again, waits (is refused) until its watch passes `floor`.
So the document holds what is in flight (admitted, not yet in every live writer's watch), not
rate x a fixed settle time. A snapshot without a watermark (a static state: no watch) falls back
to the old rule: an entry its snapshot shows is dropped `settle_s` after its creation.

Two kinds of entries (accel.quota invariant 1): an admission reservation (`stage` "admitted",
id = the pod's uid) and a bind conversion (`stage` "bound", id = `bound/<uid>`) that moves
`undecided` GPU-equivalents off the undecided type ("") onto the type the pod was bound to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson

LEDGER_KEY = "ledger.json"
WRITER_LIVE_S = 10.0  # a writer not heard from for this long no longer holds stamped entries back (rule 6)

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
    seen: int | None = None  # rule 4: the smallest watch watermark known to show this entry's pod

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
        if self.seen is not None:
            data["seen"] = self.seen
        return data

    @classmethod
    def from_json(cls, rid: str, data: Mapping[str, Any]) -> Reservation:
        seen = data.get("seen")
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
            seen=None if seen is None else _watermark(seen),  # absent before watermarks (upgrade)
        )


@dataclass(frozen=True, slots=True)
class Writer:
    """One registered writer (rule 5): the watch watermark of its decisions' snapshots, and when."""

    watermark: int
    at: float


def _watermark(value: Any) -> int:
    """A stored watermark: a non-negative integer (bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"watermark {value!r} is not an integer")
    number = int(value)
    if number < 0:
        raise ValueError(f"watermark {value!r} is negative")
    return number


def parse_watermark(resource_version: str) -> int | None:
    """A watch's resourceVersion as a watermark: the decimal integer etcd-backed API servers give,
    None for anything else (no watermark: the snapshot falls back to the settle rule)."""
    return int(resource_version) if resource_version.isascii() and resource_version.isdigit() else None


def _member(rid: str, entry: Mapping[str, Any]) -> str:
    """One member of the reservations object, as orjson writes it inside the whole document (as
    text: the ConfigMap value is a str, so the join needs no decode of the whole document)."""
    return (orjson.dumps(rid) + b":" + orjson.dumps(entry)).decode()


def _stamped_member(rid: str, member: str, seen: int) -> str:
    """`member` with `seen` set, every other field (also those of a newer writer) kept as stored.

    Members are orjson's own text (`_member`), so an entry without a "seen" key anywhere gets the
    key appended as the last one, exactly as re-encoding it would place it (a pruning pass stamps
    every entry a new generation shows: this is most of them, at a string join each)."""
    if '"seen":' not in member and member.endswith("}") and not member.endswith("{}"):
        return f'{member[:-1]},"seen":{seen}}}'
    entry = orjson.loads(member[len(orjson.dumps(rid).decode()) + 1:])
    entry["seen"] = seen
    return _member(rid, entry)


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
    """All live reservations by id, the registered writers and the drop floor (rules 4-6);
    `corrupt` marks a stored document we could not read.

    Memo (rules 2-3): when `clean_for` is a visible set, `consumed` is exactly the entries that set
    shows (not counted; kept until every live writer's watch shows them), `totals` sums every other
    entry, and `earliest_expiry` is the first expiry among those counted ones.
    """

    reservations: Mapping[str, Reservation] = field(default_factory=dict)
    corrupt: bool = False
    writers: Mapping[str, Writer] = field(default_factory=dict)
    floor: int = 0
    members: Mapping[str, str] | None = field(default=None, compare=False, repr=False)
    totals: Totals | None = field(default=None, compare=False, repr=False)
    clean_for: frozenset[str] | None = field(default=None, compare=False, repr=False)
    earliest_expiry: float | None = field(default=None, compare=False, repr=False)
    consumed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.members is None:
            members = {rid: _member(rid, r.to_json()) for rid, r in self.reservations.items()}
            object.__setattr__(self, "members", members)
        if self.totals is None:
            counted = (r for rid, r in self.reservations.items() if rid not in self.consumed)
            object.__setattr__(self, "totals", _totals(counted))
        if self.earliest_expiry is None:
            earliest = min(
                (r.expires for rid, r in self.reservations.items() if rid not in self.consumed),
                default=float("inf"),
            )
            object.__setattr__(self, "earliest_expiry", earliest)

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Ledger:
        """Parse the ConfigMap data; an unreadable document becomes an empty ledger marked corrupt.

        Reservations are short-lived and the watch still counts every real pod, so starting over
        loses at most one TTL of in-flight admissions instead of blocking all admissions. A document
        of the format before watermarks (no `writers`, no `floor`, no `seen`) reads as one with no
        writer registered yet and floor 0; the next write upgrades it in place.
        """
        raw = data.get(LEDGER_KEY)
        if not raw:
            return cls()
        try:
            document = orjson.loads(raw)
            entries = document["reservations"]
            parsed = {rid: Reservation.from_json(rid, entry) for rid, entry in entries.items()}
            writers = {
                str(name): Writer(_watermark(w["watermark"]), float(w["at"]))
                for name, w in (document.get("writers") or {}).items()
            }
            return cls(
                parsed,
                writers=writers,
                floor=_watermark(document.get("floor", 0)),
                members={rid: _member(rid, entry) for rid, entry in entries.items()},
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
            return cls(corrupt=True)

    def to_data(self) -> dict[str, str]:
        """The ConfigMap data (rule 1: one join of the encoded members)."""
        assert self.members is not None
        parts = ['{"reservations":{', ",".join(self.members.values()), "}"]
        if self.writers:
            writers = {name: {"watermark": w.watermark, "at": w.at} for name, w in self.writers.items()}
            parts += [',"writers":', orjson.dumps(writers).decode()]
        if self.floor:
            parts.append(f',"floor":{self.floor}')
        parts.append("}")
        return {LEDGER_KEY: "".join(parts)}

    def is_clean(self, *, now: float, visible: frozenset[str]) -> bool:
        """True when the memo is exact for (`now`, `visible`): `totals` then counts exactly the
        entries neither expired nor shown by `visible` (rule 2, no walk)."""
        assert self.earliest_expiry is not None
        return self.clean_for is visible and now < self.earliest_expiry and not self.corrupt

    def behind(self, watermark: int | None) -> bool:
        """Rule 6: whether a snapshot at `watermark` (None: none) may miss a pod whose entry is gone."""
        return self.floor > 0 and (watermark is None or watermark < self.floor)

    def horizon(self, now: float) -> int | None:
        """Rule 5: the smallest watermark of the writers registered less than WRITER_LIVE_S ago
        (None when there is none: nothing is dropped by watermark then)."""
        live = [w.watermark for w in self.writers.values() if now - w.at < WRITER_LIVE_S]
        return min(live) if live else None

    def pruned(
        self, *, now: float, visible: frozenset[str], watermark: int | None = None, settle_s: float = 0.0,
        full: bool = False,
    ) -> Ledger:
        """Without expired entries and those every live writer's watch shows (rules 4-5); entries
        `visible` shows are stamped with `watermark`. Without a watermark (a snapshot of no
        watch), an entry `visible` shows is dropped once it is `settle_s` old instead.

        A ledger already clean for (`now`, `visible`) is returned as it is: entries that became
        droppable meanwhile do not count either way, and the next full pass (a new `visible` set:
        at most one per state generation, or a document another writer wrote) or the reconciler's
        pass (`full`: walk even so) drops them. So a run of decisions between two generations does
        no walk at all."""
        if not full and self.is_clean(now=now, visible=visible):
            return self
        assert self.members is not None
        # Who drops does not matter (rule 6 guards every later decision), but never past this
        # writer's own watch: it registers that watermark with this write.
        horizon = self.horizon(now)
        if watermark is not None:
            horizon = watermark if horizon is None else min(horizon, watermark)
        settled = now - settle_s
        floor = self.floor
        kept: dict[str, Reservation] = {}
        members: dict[str, str] = {}
        changed = False
        for rid, r in self.reservations.items():
            if r.expires <= now:
                changed = True
                continue
            member = self.members[rid]
            if rid in visible:
                if watermark is None:
                    if r.created <= settled:
                        changed = True
                        continue
                elif r.seen is None or watermark < r.seen:
                    r = _replace_seen(r, watermark)
                    member = _stamped_member(rid, member, watermark)
                    changed = True
            if horizon is not None and r.seen is not None and r.seen <= horizon:
                floor = max(floor, r.seen)
                changed = True
                continue
            kept[rid] = r
            members[rid] = member
        consumed = frozenset(rid for rid in kept if rid in visible)
        if not changed:
            return Ledger(
                self.reservations, writers=self.writers, floor=self.floor, members=self.members,
                clean_for=visible, consumed=consumed,
            )
        return Ledger(kept, writers=self.writers, floor=floor, members=members, clean_for=visible,
                      consumed=consumed)

    def registered(self, writer: str, watermark: int, now: float) -> Ledger:
        """Rule 5: this ledger with `writer` registered at `watermark` as of `now`, and writers not
        heard from for WRITER_LIVE_S left out (they hold nothing back any more). Memo kept: the
        entries and what counts are unchanged."""
        writers = {name: w for name, w in self.writers.items() if now - w.at < WRITER_LIVE_S}
        writers[writer] = Writer(watermark, now)
        return Ledger(
            self.reservations, writers=writers, floor=self.floor, members=self.members, totals=self.totals,
            clean_for=self.clean_for, earliest_expiry=self.earliest_expiry, consumed=self.consumed,
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
            return Ledger(kept, writers=self.writers, floor=self.floor, members=members)
        totals = {team: dict(lines) for team, lines in self.totals.items()}
        for rid in gone:
            if rid not in self.consumed:
                reservation = self.reservations[rid]
                _add(totals.setdefault(reservation.team, {}), reservation, -1)
        return Ledger(
            kept, writers=self.writers, floor=self.floor, members=members, totals=totals,
            clean_for=self.clean_for, consumed=self.consumed - gone,
        )

    def with_reservation(self, reservation: Reservation) -> Ledger:
        """This ledger plus (or with a replaced) `reservation`; memo fields updated, not rebuilt.
        An entry the memo's visible set already shows joins `consumed` (the watch counts its pod)."""
        assert self.members is not None and self.totals is not None and self.earliest_expiry is not None
        rid = reservation.id
        totals: dict[str, Mapping[tuple[str, int], tuple[int, int]]] = dict(self.totals)
        consumed = self.consumed
        previous = self.reservations.get(rid)
        if previous is not None:  # an upsert: the old amount leaves its team's totals
            if rid in consumed:
                consumed = consumed - {rid}
            else:
                old = dict(totals.get(previous.team, {}))
                _add(old, previous, -1)
                totals[previous.team] = old
        earliest = self.earliest_expiry
        if self.clean_for is not None and rid in self.clean_for:
            consumed = consumed | {rid}
        else:
            mine = dict(totals.get(reservation.team, {}))
            _add(mine, reservation, 1)
            totals[reservation.team] = mine
            earliest = min(earliest, reservation.expires)
        return Ledger(
            {**self.reservations, rid: reservation},
            writers=self.writers,
            floor=self.floor,
            members={**self.members, rid: _member(rid, reservation.to_json())},
            totals=totals,
            clean_for=self.clean_for,
            earliest_expiry=earliest,
            consumed=consumed,
        )


# `_replace_seen` passes every field: one added to Reservation must be added there too.
assert [f.name for f in dataclasses.fields(Reservation)] == [
    "id", "team", "type", "amount", "namespace", "created", "expires", "replica", "job", "name", "stage",
    "undecided", "seen",
]


def _replace_seen(r: Reservation, seen: int) -> Reservation:
    """`dataclasses.replace(r, seen=seen)` at a third of its cost (a pruning pass stamps every entry a
    new generation shows)."""
    return Reservation(r.id, r.team, r.type, r.amount, r.namespace, r.created, r.expires, r.replica, r.job,
                       r.name, r.stage, r.undecided, seen)
