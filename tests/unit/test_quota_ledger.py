"""accel.quota.ledger: the memoised ledger gives exactly what a full walk gives (rules 1-3)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.messages import Finding
from accel.policy.models import Team
from accel.quota.ledger import LEDGER_KEY, Ledger, Reservation
from accel.quota.rules import LEDGER_NAME, SETTLE_S, check_quota, decide_reservation, team_usage_now
from kube.fake import FakeCluster
from kube.testing import RecordingSleep
from serving.ledger import LedgerClient
from tests.unit.test_quota import NLP

VISIBLE_SETS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"r1"}),
    frozenset({"r2", "r3"}),
    frozenset({"r1", "r2", "r3", "r4"}),
)


def walked_usage(
    team: str, ledger: Ledger, *, visible: frozenset[str], now: float, exclude: str | None
) -> dict[str, Fraction]:
    """The definition (accel.quota.rules invariant 1), one reservation at a time."""
    usage: dict[str, Fraction] = {}
    for rid, r in ledger.reservations.items():
        if r.team == team and rid != exclude and r.expires > now and rid not in visible:
            usage[r.type] = usage.get(r.type, Fraction(0)) + r.amount
    return usage


def encoded(ledger: Ledger) -> str:
    return orjson.dumps(
        {"reservations": {rid: r.to_json() for rid, r in ledger.reservations.items()}}
    ).decode()


reservations = st.builds(
    Reservation,
    id=st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
    team=st.sampled_from(["nlp", "vision"]),
    type=st.sampled_from(["nvidia-a100-80gb", "nvidia-l4-24gb"]),
    amount=st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 4), Fraction(3, 7)]),
    expires=st.sampled_from([10.0, 20.0, 30.0]),
    job=st.sampled_from(["", "train"]),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), reservations),
        st.tuples(
            st.just("prune"), st.sampled_from([0.0, 15.0, 25.0]), st.sampled_from(range(len(VISIBLE_SETS)))
        ),
        st.tuples(st.just("reparse")),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    now=st.sampled_from([0.0, 15.0]),
    visible=st.sampled_from(range(len(VISIBLE_SETS))),
    exclude=st.sampled_from([None, "r1", "r2"]),
)
def test_memoised_ledger_agrees_with_a_full_walk(
    steps: list[tuple[Any, ...]], now: float, visible: int, exclude: str | None
) -> None:
    ledger = Ledger()
    for step in steps:
        if step[0] == "add":
            ledger = ledger.with_reservation(step[1])
        elif step[0] == "prune":
            before, shown = dict(ledger.reservations), VISIBLE_SETS[step[2]]
            ledger = ledger.pruned(now=step[1], visible=shown)
            counted = {rid: r for rid, r in ledger.reservations.items() if rid not in shown}
            # Every entry that still counts is kept; an entry the watch shows may stay (consumed,
            # not counted) until the next full pass; nothing else is added or changed.
            assert counted == {
                rid: r for rid, r in before.items() if r.expires > step[1] and rid not in shown
            }
            assert ledger.reservations.items() <= before.items()
        if ledger.clean_for is not None:  # the memo's invariant: consumed = the entries the set shows
            assert ledger.consumed == {rid for rid in ledger.reservations if rid in ledger.clean_for}
        else:
            ledger = Ledger.from_data(ledger.to_data())
        assert ledger.to_data() == {LEDGER_KEY: encoded(ledger)}
        for team in ("nlp", "vision"):
            shown = VISIBLE_SETS[visible]
            got = team_usage_now(team, {}, ledger, visible=shown, now=now, exclude=exclude)
            assert got == walked_usage(team, ledger, visible=shown, now=now, exclude=exclude)


def test_unknown_fields_of_a_newer_writer_survive_a_rewrite() -> None:
    document = '{"reservations":{"r1":{"team":"nlp","type":"t","amount":"1","future":{"x":[1]}}}}'
    assert Ledger.from_data({LEDGER_KEY: document}).to_data() == {LEDGER_KEY: document}


def res(rid: str, *, expires: float = 100.0, team: str = "nlp") -> Reservation:
    return Reservation(id=rid, team=team, type="nvidia-a100-80gb", amount=Fraction(1), expires=expires)


SHOWN = frozenset({"x"})


@pytest.mark.parametrize(
    ("visible", "now", "clean"),
    [(SHOWN, 0.0, True), (SHOWN, 100.0, False), (frozenset({"x"}).union(), 0.0, False)],
    ids=[
        "same-visible-set-before-expiry-is-clean",
        "at-earliest-expiry-is-not-clean",
        "an-equal-but-other-set-is-not-known-clean",
    ],
)
def test_clean_only_for_the_set_it_was_pruned_against_and_before_expiry(
    visible: frozenset[str], now: float, clean: bool
) -> None:
    ledger = Ledger({"a": res("a")}).pruned(now=0.0, visible=SHOWN)
    assert ledger.is_clean(now=now, visible=visible) is clean


def test_adding_a_reservation_the_watch_already_shows_is_consumed_without_counting() -> None:
    shown = frozenset({"b"})
    ledger = Ledger({"a": res("a")}).pruned(now=0.0, visible=shown).with_reservation(res("b"))
    assert ledger.is_clean(now=0.0, visible=shown) and ledger.consumed == {"b"}
    assert team_usage_now("nlp", {}, ledger, visible=shown, now=0.0) == {"nvidia-a100-80gb": Fraction(1)}
    assert set(ledger.pruned(now=0.0, visible=frozenset({"b"})).reservations) == {"a"}  # next generation


def test_upsert_moves_the_amount_between_teams() -> None:
    shown: frozenset[str] = frozenset()
    ledger = (
        Ledger()
        .pruned(now=0.0, visible=shown)
        .with_reservation(res("a"))
        .with_reservation(res("a", team="vision"))
    )
    assert team_usage_now("nlp", {}, ledger, visible=shown, now=0.0) == {}
    assert team_usage_now("vision", {}, ledger, visible=shown, now=0.0) == {"nvidia-a100-80gb": Fraction(1)}


def test_decisions_in_a_row_stay_clean_so_no_step_walks_the_ledger() -> None:
    shown = frozenset({"gone"})
    ledger = Ledger({"gone": res("gone"), "kept": res("kept")})
    for i in range(3):
        outcome = decide_reservation(
            ledger, res(f"new{i}"), team=NLP, base={}, visible=shown, now=SETTLE_S + 1
        )
        assert outcome.ledger is not None
        ledger = outcome.ledger
        assert ledger.is_clean(now=SETTLE_S + 1, visible=shown)
    assert set(ledger.reservations) == {"kept", "new0", "new1", "new2"}


def test_without_a_watermark_an_entry_the_watch_shows_stays_settle_seconds_but_no_longer_counts() -> None:
    """accel.quota invariant 6's fallback (a static state, no watch watermark): a replica whose
    watch lags must still find the pod in the ledger. With watermarks: test_ledger_retention.py."""
    shown = frozenset({"seen"})
    ledger = Ledger({"seen": res("seen"), "kept": res("kept")})
    young = decide_reservation(ledger, res("new"), team=NLP, base={}, visible=shown, now=SETTLE_S - 1)
    assert young.ledger is not None and set(young.ledger.reservations) == {"seen", "kept", "new"}
    assert young.usage == {"nvidia-a100-80gb": Fraction(1)}  # "kept" only: "seen" is counted by the watch
    # Consumed entries do not make the memo inexact: the next decisions read the totals, no walk.
    assert young.ledger.is_clean(now=SETTLE_S - 1, visible=shown) and young.ledger.consumed == {"seen"}
    assert team_usage_now("nlp", {}, young.ledger, visible=shown, now=SETTLE_S - 1) == {
        "nvidia-a100-80gb": Fraction(2)
    }
    # Once settled it is dropped by the next full pass (a new visible set: the next state generation).
    later = frozenset({"seen"})
    old = decide_reservation(young.ledger, res("newer"), team=NLP, base={}, visible=later, now=SETTLE_S)
    assert old.ledger is not None and "seen" not in old.ledger.reservations


def test_a_consumed_entry_re_added_or_removed_keeps_the_memo_exact() -> None:
    shown = frozenset({"seen"})
    ledger = Ledger({"seen": res("seen"), "kept": res("kept")}).pruned(
        now=0.0, visible=shown, settle_s=SETTLE_S
    )
    assert ledger.consumed == {"seen"}
    again = ledger.with_reservation(res("seen", expires=50.0))  # an upsert of an entry the watch shows
    assert again.consumed == {"seen"} and again.is_clean(now=0.0, visible=shown)
    assert team_usage_now("nlp", {}, again, visible=shown, now=0.0) == {"nvidia-a100-80gb": Fraction(1)}
    fewer = again.without(["seen", "kept"])
    assert fewer.consumed == frozenset() and fewer.is_clean(now=0.0, visible=shown)
    assert team_usage_now("nlp", {}, fewer, visible=shown, now=0.0) == {}


fractions = st.builds(
    Fraction, st.integers(min_value=0, max_value=40), st.integers(min_value=1, max_value=12)
)


@settings(max_examples=300, deadline=None)
@given(
    usage=st.dictionaries(st.sampled_from(["nvidia-a100-80gb", "nvidia-l4-24gb"]), fractions, max_size=2),
    amount=fractions,
    limit=st.sampled_from(["0", "1", "2.5", "7", "0.25"]),
    total=st.sampled_from(["1", "3", "3.75"]),
    accel_type=st.sampled_from(["nvidia-a100-80gb", "nvidia-l4-24gb", "*"]),
)
def test_check_quota_equals_fraction_arithmetic(
    usage: dict[str, Fraction], amount: Fraction, limit: str, total: str, accel_type: str
) -> None:
    team = Team(name="nlp", quota={"nvidia-a100-80gb": Decimal(limit), "*": Decimal(total)})
    want = []
    for key in (accel_type, "*"):
        if key not in team.quota or (key == "*" and accel_type == "*"):
            continue
        used = sum(usage.values(), Fraction(0)) if key == "*" else usage.get(key, Fraction(0))
        if used + amount > Fraction(Decimal(team.quota[key])):
            want.append((key, used, Fraction(Decimal(team.quota[key]))))
    assert [(e.key, e.used, e.limit) for e in check_quota(team, accel_type, amount, usage)] == want


def decide_for(team: Team) -> Any:
    def decide(rid: str) -> Any:
        return lambda ledger: decide_reservation(
            ledger, res(rid), team=team, base={}, visible=frozenset(), now=0.0
        )

    return decide


async def test_decisions_ready_in_the_same_turn_share_one_write_in_order() -> None:
    """Group commit: the flush starts on the next turn of the event loop, so five decisions made
    in one turn (requests read together) share the first write, decided in arrival order."""
    store = FakeCluster()  # no latency: without the turn, each decision would write alone
    client = LedgerClient(store, sleep=RecordingSleep())
    decide = decide_for(Team(name="nlp", quota={"*": Decimal(4)}))
    outcomes = await asyncio.gather(*(client.run(decide(f"r{i}")) for i in range(5)))
    assert [bool(o.excess) for o in outcomes if not isinstance(o, Finding)] == [False] * 4 + [True]
    assert client.writes == 1
    data, _ = await store.read(LEDGER_NAME)
    assert list(Ledger.from_data(data).reservations) == ["r0", "r1", "r2", "r3"]


class GatedStore:
    """The fake API server, whose writes wait until `open` is set (a write in flight)."""

    def __init__(self, store: FakeCluster) -> None:
        self.store = store
        self.open = asyncio.Event()
        self.writing = asyncio.Event()

    async def read(self, name: str) -> tuple[dict[str, str], str | None]:
        return await self.store.read(name)

    async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
        self.writing.set()
        await self.open.wait()
        return await self.store.write(name, data, expected_version)


async def _first_write_in_flight() -> tuple[FakeCluster, GatedStore, LedgerClient, Any, asyncio.Task[Any]]:
    """A client whose first decision ("r0", quota 4) is being written; the write waits for `open`."""
    store = FakeCluster()
    gated = GatedStore(store)
    client = LedgerClient(gated, sleep=RecordingSleep())
    decide = decide_for(Team(name="nlp", quota={"*": Decimal(4)}))
    first = asyncio.create_task(client.run(decide("r0")))
    await asyncio.wait_for(gated.writing.wait(), 10)
    return store, gated, client, decide, first


async def test_decisions_arriving_during_a_write_share_the_next_one() -> None:
    store, gated, client, decide, first = await _first_write_in_flight()  # r0's write is in flight
    later = [asyncio.create_task(client.run(decide(f"r{i}"))) for i in range(1, 5)]
    await asyncio.sleep(0)
    gated.open.set()
    outcomes = [await first, *[await task for task in later]]
    assert [bool(o.excess) for o in outcomes if not isinstance(o, Finding)] == [False] * 4 + [True]
    assert client.writes == 2  # r0 alone, then the four that queued meanwhile together
    data, _ = await store.read(LEDGER_NAME)
    assert list(Ledger.from_data(data).reservations) == ["r0", "r1", "r2", "r3"]


async def test_a_caller_cancelled_while_waiting_does_not_stop_the_batch() -> None:
    store, gated, client, decide, first = await _first_write_in_flight()  # r0's write is in flight
    first.cancel()  # e.g. the API server gave up on this admission
    second = asyncio.create_task(client.run(decide("r1")))
    await asyncio.sleep(0)
    gated.open.set()
    outcome = await asyncio.wait_for(second, 10)
    assert not isinstance(outcome, Finding) and not outcome.excess
    data, _ = await store.read(LEDGER_NAME)
    assert list(Ledger.from_data(data).reservations) == [
        "r0",
        "r1",
    ]  # r0 was written: the reconciler frees it


async def test_a_failed_write_reaches_every_waiter_and_later_callers_still_commit() -> None:
    store = FakeCluster(sleep=RecordingSleep())
    store.set_latency(0.01)
    client = LedgerClient(store, sleep=RecordingSleep())

    def decide(rid: str) -> Any:
        return lambda ledger: decide_reservation(
            ledger, res(rid), team=NLP, base={}, visible=frozenset(), now=0.0
        )

    def boom(_ledger: Ledger) -> Any:
        raise RuntimeError("decision failed")

    results = await asyncio.gather(client.run(boom), client.run(decide("a")), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and not isinstance(results[1], BaseException)
    data, _ = await store.read(LEDGER_NAME)
    assert list(Ledger.from_data(data).reservations) == ["a"]


@settings(max_examples=25, deadline=None)
@given(
    quota=st.integers(min_value=0, max_value=12),
    callers=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=30),
)
async def test_batches_that_lose_the_race_to_another_replica_never_admit_over_quota(
    quota: int, callers: list[int]
) -> None:
    """Group commit under contention: two replicas' batches race on one ledger; a batch whose CAS
    write loses is decided again, whole, on the winner's ledger. Exactly min(quota, asks) admitted."""
    store = FakeCluster(sleep=RecordingSleep())
    store.set_latency(0.01)  # every store call yields: batches form and the two replicas interleave
    replicas = [LedgerClient(store, sleep=RecordingSleep()) for _ in range(2)]
    team = Team(name="nlp", quota={"*": Decimal(quota)})

    def decide(rid: str) -> Any:
        return lambda ledger: decide_reservation(
            ledger, res(rid), team=team, base={}, visible=frozenset(), now=0.0
        )

    outcomes = await asyncio.gather(*(replicas[c].run(decide(f"r{i}")) for i, c in enumerate(callers)))
    assert not any(isinstance(o, Finding) for o in outcomes), outcomes
    admitted = {f"r{i}" for i, o in enumerate(outcomes) if not isinstance(o, Finding) and not o.excess}
    data, _ = await store.read(LEDGER_NAME)
    assert set(Ledger.from_data(data).reservations) == admitted
    assert len(admitted) == min(quota, len(callers))


async def test_a_batch_that_loses_the_race_is_decided_again_on_the_winner_ledger() -> None:
    store = FakeCluster(sleep=RecordingSleep())
    store.set_latency(0.01)
    replicas = [LedgerClient(store, sleep=RecordingSleep()) for _ in range(2)]
    team = Team(name="nlp", quota={"*": Decimal(10)})

    def decide(rid: str) -> Any:
        return lambda ledger: decide_reservation(
            ledger, res(rid), team=team, base={}, visible=frozenset(), now=0.0
        )

    outcomes = await asyncio.gather(*(replicas[i % 2].run(decide(f"r{i}")) for i in range(30)))
    admitted = [o for o in outcomes if not isinstance(o, Finding) and not o.excess]
    assert len(admitted) == 10
    assert replicas[1].conflicts >= 1  # its first write raced replica 0's and lost
    assert replicas[0].writes + replicas[1].writes < len(admitted)  # batches: fewer writes than admissions


async def test_decisions_queued_during_a_lost_write_join_its_retry() -> None:
    store = FakeCluster()
    gated = GatedStore(store)
    me, other = LedgerClient(gated, sleep=RecordingSleep()), LedgerClient(store, sleep=RecordingSleep())
    decide = decide_for(Team(name="nlp", quota={"*": Decimal(10)}))
    await other.run(decide("theirs-0"))
    first = asyncio.create_task(me.run(decide("r0")))
    await asyncio.wait_for(gated.writing.wait(), 10)  # r0's write is in flight ...
    await other.run(decide("theirs-1"))  # ... and another replica writes first: r0's write will lose
    later = [asyncio.create_task(me.run(decide(f"r{i}"))) for i in range(1, 4)]
    await asyncio.sleep(0)
    gated.open.set()
    outcomes = [await first, *[await task for task in later]]
    assert all(not isinstance(o, Finding) and not o.excess for o in outcomes)
    assert me.conflicts == 1 and me.writes == 1  # the retry carried r0 and the three queued meanwhile
    data, _ = await store.read(LEDGER_NAME)
    assert set(Ledger.from_data(data).reservations) == {"theirs-0", "theirs-1", "r0", "r1", "r2", "r3"}
