"""accel.quota.rules (pure ledger and quota math) and serving.ledger (the CAS loop over a CasStore)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import pytest

from accel.admission.messages import Finding
from accel.policy.models import Team
from accel.quota.ledger import LEDGER_KEY, Ledger, Reservation
from accel.quota.rules import (
    LEDGER_NAME,
    check_quota,
    decide_reservation,
    team_usage_now,
    type_room,
)
from kube.fake import FakeCluster
from serving.ledger import LedgerClient

NLP = Team(
    name="nlp", quota={"nvidia-a100-80gb": Decimal(16), "nvidia-h100-80gb": Decimal(8), "*": Decimal(20)}
)


def res(rid: str, amount: Fraction | int = 1, *, team: str = "nlp", accel_type: str = "nvidia-a100-80gb",
        expires: float = 100.0) -> Reservation:
    return Reservation(
        id=rid, team=team, type=accel_type, amount=Fraction(amount), created=0.0, expires=expires
    )


@pytest.mark.parametrize(
    ("accel_type", "amount", "usage", "keys"),
    [
        ("nvidia-a100-80gb", 2, {"nvidia-a100-80gb": Fraction(14)}, []),
        ("nvidia-a100-80gb", 2, {"nvidia-a100-80gb": Fraction(15)}, ["nvidia-a100-80gb"]),
        ("nvidia-h100-80gb", 1, {"nvidia-a100-80gb": Fraction(16), "nvidia-h100-80gb": Fraction(4)}, ["*"]),
        (
            "nvidia-a100-80gb",
            9,
            {"nvidia-a100-80gb": Fraction(8), "nvidia-h100-80gb": Fraction(8)},
            ["nvidia-a100-80gb", "*"],
        ),
        ("nvidia-l4-24gb", Fraction(1, 4), {"nvidia-a100-80gb": Fraction(79, 4)}, []),
        (
            "nvidia-l4-24gb",
            Fraction(1, 4),
            {"nvidia-a100-80gb": Fraction(16), "nvidia-h100-80gb": Fraction(15, 4) + Fraction(1, 100)},
            ["*"],
        ),
    ],
    ids=[
        "fits-exactly-under",
        "2x-a100-over-type-quota",
        "total-quota-caps-other-type",
        "both-lines-overrun",
        "quarter-gpu-fills-total-exactly",
        "quarter-gpu-tips-total-over",
    ],
)
def test_check_quota(accel_type: str, amount: Fraction, usage: dict[str, Fraction], keys: list[str]) -> None:
    assert [e.key for e in check_quota(NLP, accel_type, Fraction(amount), usage)] == keys


def test_ledger_round_trips_exact_fractions() -> None:
    ledger = Ledger({"r1": res("r1", Fraction(1, 7)), "r2": res("r2", 3)})
    again = Ledger.from_data(ledger.to_data())
    assert again.reservations == ledger.reservations


@pytest.mark.parametrize(
    "raw",
    ["not json", "{}", '{"reservations": {"x": {"team": 1}}}', '{"reservations": []}'],
    ids=["garbage", "no-reservations-key", "entry-missing-fields", "wrong-shape"],
)
def test_unreadable_ledger_is_empty_and_marked(raw: str) -> None:
    ledger = Ledger.from_data({LEDGER_KEY: raw})
    assert ledger.reservations == {} and ledger.corrupt


def test_reservation_visible_in_watch_counts_once() -> None:
    base = {"nlp": {"nvidia-a100-80gb": Fraction(4)}}  # includes the pod with reservation r1
    ledger = Ledger({"r1": res("r1", 4), "r2": res("r2", 2)})
    usage = team_usage_now("nlp", base, ledger, visible=frozenset({"r1"}), now=0.0)
    assert usage == {"nvidia-a100-80gb": Fraction(6)}


def test_expired_reservations_do_not_count_and_are_pruned() -> None:
    ledger = Ledger({"old": res("old", 8, expires=10.0), "new": res("new", 1, expires=200.0)})
    assert team_usage_now("nlp", {}, ledger, visible=frozenset(), now=50.0) == {
        "nvidia-a100-80gb": Fraction(1)
    }
    assert set(ledger.pruned(now=50.0, visible=frozenset()).reservations) == {"new"}


def test_decision_excludes_own_reservation_so_a_retry_is_not_double_charged() -> None:
    ledger = Ledger({"me": res("me", 16)})
    outcome = decide_reservation(ledger, res("me", 16), team=NLP, base={}, visible=frozenset(), now=0.0)
    assert outcome.excess == () and outcome.ledger is not None
    assert set(outcome.ledger.reservations) == {"me"}


def test_decision_without_commit_never_returns_a_ledger() -> None:
    outcome = decide_reservation(
        Ledger(), res("x"), team=NLP, base={}, visible=frozenset(), now=0.0, commit=False
    )
    assert outcome.ledger is None and outcome.excess == ()


def test_type_room_checks_only_the_type_line() -> None:
    usage = {"nvidia-h100-80gb": Fraction(4), "": Fraction(12)}  # "*" is full: 16 + 4 of 20
    assert type_room(NLP, "nvidia-h100-80gb", Fraction(4), usage) is None  # 8 of 8: exactly at the limit
    excess = type_room(NLP, "nvidia-h100-80gb", Fraction(5), usage)
    assert excess is not None and excess.key == "nvidia-h100-80gb" and excess.would_use == 9


def test_undecided_reservation_needs_room_on_some_candidate_type() -> None:
    team = Team(
        name="nlp", quota={"nvidia-a100-80gb": Decimal(4), "nvidia-h100-80gb": Decimal(8), "*": Decimal(20)}
    )
    base = {"nlp": {"nvidia-h100-80gb": Fraction(8), "nvidia-a100-80gb": Fraction(2)}}
    undecided = res("x", 2, accel_type="")
    both = {"nvidia-h100-80gb": Fraction(2), "nvidia-a100-80gb": Fraction(2)}
    fits = decide_reservation(
        Ledger(), undecided, team=team, base=base, visible=frozenset(), now=0.0, candidates=both
    )
    assert fits.excess == () and fits.ledger is not None  # H100 is full, A100 has exactly room for 2
    full = {"nlp": {"nvidia-h100-80gb": Fraction(8), "nvidia-a100-80gb": Fraction(3)}}
    denied = decide_reservation(
        Ledger(), undecided, team=team, base=full, visible=frozenset(), now=0.0, candidates=both
    )
    assert [e.key for e in denied.excess] == ["nvidia-h100-80gb", "nvidia-a100-80gb"]


def test_bind_conversion_moves_the_pod_between_types_without_a_second_count() -> None:
    base = {"nlp": {"": Fraction(2)}}  # the pending pod, counted as undecided by the watch
    moved = Reservation("bound/u1", "nlp", "nvidia-h100-80gb", Fraction(2), expires=100.0, stage="bound",
                        undecided=Fraction(2))
    ledger = Ledger().with_reservation(moved)
    usage = team_usage_now("nlp", base, ledger, visible=frozenset(), now=0.0)
    assert usage == {"": Fraction(0), "nvidia-h100-80gb": Fraction(2)}
    assert sum(usage.values()) == 2  # the "*" line sees the pod once
    # once the watch shows the pod bound, the conversion is consumed and the watch counts it typed
    shown = {"nlp": {"nvidia-h100-80gb": Fraction(2)}}
    assert team_usage_now("nlp", shown, ledger, visible=frozenset({"bound/u1"}), now=0.0) == {
        "nvidia-h100-80gb": Fraction(2)
    }
    assert Ledger.from_data(ledger.to_data()) == ledger


# ---- CAS loop ---------------------------------------------------------------------------------


def decide_with(reservation: Reservation, now: float = 0.0):  # type: ignore[no-untyped-def]
    return lambda ledger: decide_reservation(
        ledger, reservation, team=NLP, base={}, visible=frozenset(), now=now
    )


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_cas_writes_the_reservation() -> None:
    store = FakeCluster()
    outcome = await LedgerClient(store, sleep=no_sleep).run(decide_with(res("r1", 2)))
    assert not isinstance(outcome, Finding) and outcome.excess == ()
    data, version = await store.read(LEDGER_NAME)
    assert version is not None and set(Ledger.from_data(data).reservations) == {"r1"}


class RacingStore:
    """A CasStore whose first write is preceded by another replica's write (a lost race)."""

    def __init__(self, store: FakeCluster, rival: Reservation) -> None:
        self.store, self.rival, self.raced = store, rival, False

    async def read(self, name: str) -> tuple[dict[str, str], str | None]:
        return await self.store.read(name)

    async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
        if not self.raced:
            self.raced = True
            current, version = await self.store.read(name)
            rival = Ledger.from_data(current).with_reservation(self.rival)
            assert await self.store.write(name, rival.to_data(), version) is not None
        return await self.store.write(name, data, expected_version)


async def test_lost_race_rereads_and_decides_with_the_rivals_reservation() -> None:
    store = FakeCluster()
    client = LedgerClient(RacingStore(store, res("theirs", 15)), sleep=no_sleep)
    outcome = await client.run(decide_with(res("mine", 2)))
    assert client.conflicts == 1
    assert not isinstance(outcome, Finding) and [e.key for e in outcome.excess] == ["nvidia-a100-80gb"]
    data, _ = await store.read(LEDGER_NAME)
    assert set(Ledger.from_data(data).reservations) == {"theirs"}


async def test_lost_race_with_room_left_writes_both() -> None:
    store = FakeCluster()
    client = LedgerClient(RacingStore(store, res("theirs", 4)), sleep=no_sleep)
    outcome = await client.run(decide_with(res("mine", 2)))
    assert not isinstance(outcome, Finding) and outcome.excess == ()
    data, _ = await store.read(LEDGER_NAME)
    assert set(Ledger.from_data(data).reservations) == {"theirs", "mine"}


async def test_cas_gives_up_after_bounded_attempts_with_retry_message() -> None:
    store = FakeCluster()

    class AlwaysConflict:
        async def read(self, name: str) -> tuple[dict[str, str], str | None]:
            return await store.read(name)

        async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
            return None

    client = LedgerClient(AlwaysConflict(), attempts=3, sleep=no_sleep)
    outcome = await client.run(decide_with(res("r1")))
    assert isinstance(outcome, Finding) and outcome.reason == "quota-busy" and outcome.code == 429
    assert client.conflicts == 3


async def test_store_unreachable_denies_with_the_cause() -> None:
    store = FakeCluster()
    store.set_unreachable(True)
    outcome = await LedgerClient(store, sleep=no_sleep).run(decide_with(res("r1")))
    assert (
        isinstance(outcome, Finding)
        and outcome.reason == "quota-unavailable"
        and "Unreachable" in outcome.message
    )


async def test_concurrent_reservations_never_exceed_quota() -> None:
    store = FakeCluster()
    clients = [LedgerClient(store, sleep=no_sleep) for _ in range(2)]
    outcomes = await asyncio.gather(*(clients[i % 2].run(decide_with(res(f"r{i}", 1))) for i in range(60)))
    admitted = [o for o in outcomes if not isinstance(o, Finding) and not o.excess]
    data, _ = await store.read(LEDGER_NAME)
    assert len(Ledger.from_data(data).reservations) == len(admitted) == 16
