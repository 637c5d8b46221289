"""Ledger retention by watch watermarks (accel.quota invariant 6, accel.quota.ledger rules 4-6).

A consumed entry leaves the document as soon as every live writer's watch shows its pod, and no
decision is made from a snapshot that could miss a pod whose entry is gone: exact across replicas
whose watches lag by any amount, with the document the size of what is in flight.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.messages import Finding
from accel.quota.ledger import LEDGER_KEY, WRITER_LIVE_S, Ledger, Reservation, Writer, parse_watermark
from accel.quota.rules import LEDGER_NAME, SETTLE_S, ReservationOutcome, decide_reservation, team_usage_now
from kube.fake import FakeCluster
from serving.ledger import HEARTBEAT_S, LedgerClient
from tests.unit.quota_world import QuotaWorld
from tests.unit.test_quota import NLP

A100 = "nvidia-a100-80gb"


def res(rid: str, *, created: float = 0.0, expires: float = 1000.0) -> Reservation:
    return Reservation(id=rid, team="nlp", type=A100, amount=Fraction(1), created=created, expires=expires)


# ---- the pure model ----------------------------------------------------------------------------


def test_a_document_without_watermarks_is_read_and_upgraded_in_place() -> None:
    old = (
        '{"reservations":{"p1":{"team":"nlp","type":"nvidia-a100-80gb","amount":"1","namespace":"nlp",'
        '"created":0.0,"expires":100.0,"replica":"","future":[1]},'
        '"p2":{"team":"nlp","type":"nvidia-a100-80gb","amount":"1/2","created":0.0,"expires":100.0}}}'
    )
    ledger = Ledger.from_data({LEDGER_KEY: old})
    assert not ledger.corrupt and ledger.writers == {} and ledger.floor == 0
    assert ledger.to_data() == {LEDGER_KEY: old}  # nothing changes until a writer writes
    with_b = ledger.registered("b", 3, 1.0)  # replica b registered with its watch at 3
    upgraded = with_b.pruned(now=1.0, visible=frozenset({"p1"}), watermark=7).registered("a", 7, 1.0)
    document = orjson.loads(upgraded.to_data()[LEDGER_KEY])
    assert document["writers"] == {"b": {"watermark": 3, "at": 1.0}, "a": {"watermark": 7, "at": 1.0}}
    assert document["reservations"]["p1"]["seen"] == 7 and document["reservations"]["p1"]["future"] == [1]
    assert "seen" not in document["reservations"]["p2"]
    again = Ledger.from_data(upgraded.to_data())
    assert again == upgraded and again.to_data() == upgraded.to_data()


def test_an_entry_leaves_once_every_live_writer_has_passed_its_stamp() -> None:
    shown = frozenset({"p"})
    ledger = Ledger({"p": res("p"), "q": res("q")}, writers={"a": Writer(10, 5.0), "b": Writer(5, 0.0)})
    stamped = ledger.pruned(now=1.0, visible=shown, watermark=8)  # a's watch (at 8) shows p
    assert stamped.reservations["p"].seen == 8 and set(stamped.reservations) == {"p", "q"}  # b at 5
    b_caught_up = Ledger.from_data(stamped.registered("b", 9, 1.0).to_data())  # as the next writer reads it
    dropped = b_caught_up.pruned(now=1.5, visible=frozenset(), watermark=9)
    assert set(dropped.reservations) == {"q"} and dropped.floor == 8
    # A writer not heard from for WRITER_LIVE_S holds nothing back.
    lapsed = Ledger.from_data(stamped.to_data()).pruned(now=WRITER_LIVE_S + 0.5, visible=shown, watermark=9)
    assert set(lapsed.reservations) == {"q"} and lapsed.floor == 8
    assert lapsed.registered("c", 9, WRITER_LIVE_S + 0.5).writers.keys() == {"a", "c"}  # b unregistered


def test_a_snapshot_behind_the_floor_decides_nothing() -> None:
    ledger = Ledger({"q": res("q")}, floor=8)
    for watermark in (7, None):
        outcome = decide_reservation(ledger, res("new"), team=NLP, base={}, visible=frozenset(), now=1.0,
                                     watermark=watermark)
        assert outcome.ledger is None and outcome.behind == (watermark, 8)
    advisory = decide_reservation(ledger, res("new"), team=NLP, base={}, visible=frozenset(), now=1.0,
                                  watermark=7, commit=False)  # a dry run only reports
    assert advisory.behind is None and advisory.usage == {A100: Fraction(1)}
    made = decide_reservation(ledger, res("new"), team=NLP, base={}, visible=frozenset(), now=1.0,
                              watermark=8)
    assert made.ledger is not None and made.behind is None


def test_a_resource_version_is_a_watermark_only_when_it_is_a_decimal_integer() -> None:
    assert parse_watermark("12345") == 12345
    assert [parse_watermark(v) for v in ("", "abc", "-1", "1.5", "١٢")] == [None] * 5


# A model of the cluster: pods created and deleted at resourceVersions, writers whose watches stand
# at some version (each moves only forward, as a watch does), and the ledger they share.
class Model:
    def __init__(self) -> None:
        self.rv = 0
        self.created: dict[str, int] = {}
        self.deleted: dict[str, int] = {}
        self.watch = [0, 0, 0]
        self.ledger = Ledger()
        self.now = 0.0
        self.largest = 0

    def visible(self, w: int) -> frozenset[str]:  # present or seen and since gone (watch_ids' memory)
        return frozenset(uid for uid, at in self.created.items() if at <= self.watch[w])

    def alive_in_view(self, w: int) -> int:
        return sum(1 for uid, at in self.created.items()
                   if at <= self.watch[w] and self.deleted.get(uid, 10**9) > self.watch[w])

    def write(self, w: int, ledger: Ledger) -> None:
        self.ledger = Ledger.from_data(ledger.registered(f"w{w}", self.watch[w], self.now).to_data())
        self.largest = max(self.largest, len(self.ledger.reservations))

    def admit(self, w: int) -> None:
        uid = f"p{len(self.created)}"
        outcome = decide_reservation(self.ledger, res(uid, created=self.now), team=BIG, base={},
                                     visible=self.visible(w), now=self.now, watermark=self.watch[w])
        if outcome.behind is not None:
            return  # refused: the watch catches up first
        assert outcome.ledger is not None
        self.write(w, outcome.ledger)
        self.rv += 1
        self.created[uid] = self.rv  # the API server stores the pod after admission

    def counted(self, w: int) -> int:
        """Pods writer `w` counts: its watch's live pods plus the entries its watch does not show."""
        extra = team_usage_now("nlp", {}, self.ledger, visible=self.visible(w), now=self.now).get(A100, 0)
        return self.alive_in_view(w) + int(extra)


BIG = NLP.model_copy(update={"quota": {"*": 10**6}})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["admit", "watch", "tidy", "delete", "time"]),
                          st.integers(0, 2), st.integers(0, 6)), max_size=60))
def test_no_writer_past_the_floor_ever_counts_a_pod_zero_times(steps: list[tuple[str, int, int]]) -> None:
    """However far each watch lags and whoever tidies, a writer that may decide (its snapshot at
    or past the floor) counts every existing pod at least once; once every watch has caught up
    and tidied, each counts exactly the pods that exist and the document is empty."""
    model = Model()
    for kind, w, n in steps:
        if kind == "admit":
            model.admit(w)
        elif kind == "watch":  # the watch moves forward, never past the API server
            model.watch[w] = min(model.rv, model.watch[w] + n)
        elif kind == "tidy":  # a reconciler pass: stamp, drop, register
            model.write(w, model.ledger.pruned(now=model.now, visible=model.visible(w),
                                               watermark=model.watch[w], full=True))
        elif kind == "delete" and model.created:
            alive = [uid for uid in model.created if uid not in model.deleted]
            if alive:
                model.rv += 1
                model.deleted[alive[n % len(alive)]] = model.rv
        elif kind == "time":
            model.now += n * 3.0  # writers may lapse (WRITER_LIVE_S); entries never expire here
        existing = sum(1 for uid in model.created if uid not in model.deleted)
        for writer in range(3):
            if not model.ledger.behind(model.watch[writer]):
                assert model.counted(writer) >= existing, (writer, model.watch, model.ledger)
    model.watch = [model.rv] * 3
    for _ in range(2):
        for writer in range(3):
            model.write(writer, model.ledger.pruned(now=model.now, visible=model.visible(writer),
                                                    watermark=model.rv, full=True))
    existing = sum(1 for uid in model.created if uid not in model.deleted)
    assert [model.counted(writer) for writer in range(3)] == [existing] * 3
    assert model.ledger.reservations == {}


def test_sustained_admissions_keep_the_document_the_size_of_what_is_in_flight() -> None:
    """5,000 admissions from two writers whose watches trail by up to 5 versions: the document
    never holds more than the entries not yet in both watches (the old rule: every admission of
    the last SETTLE_S seconds)."""
    model = Model()
    for _ in range(2500):
        for w in (0, 1):
            model.admit(w)
            model.watch[w] = max(model.watch[w], model.rv - (3 if w else 5))  # each watch trails a little
        model.now += 0.01  # 200 admissions/s: 6,000 entries (~1.4 MB) with the old 30 s rule
    assert model.largest <= 20, model.largest
    assert len(model.ledger.to_data()[LEDGER_KEY]) < 8000


# ---- the client: registration, refusal, heartbeat ----------------------------------------------


async def test_writes_register_the_oldest_snapshot_of_their_decisions_and_refuse_a_stale_one() -> None:
    store = FakeCluster()
    await _advance(store, past=20)  # the watermarks below are of this API server's history
    wall = [100.0]
    client = LedgerClient(store, writer="replica-a", wall=lambda: wall[0])

    def admit(rid: str, watermark: int) -> Any:
        return client.run(
            lambda ledger: decide_reservation(ledger, res(rid, created=100.0), team=NLP, base={},
                                              visible=frozenset(), now=100.0, watermark=watermark),
            watermark=watermark,
        )

    assert isinstance(await admit("p1", 12), ReservationOutcome)
    assert (await client.read()).writers == {"replica-a": Writer(12, 100.0)}
    data, version = await store.read(LEDGER_NAME)
    floor_raised = Ledger.from_data(data)
    object.__setattr__(floor_raised, "floor", 20)  # another writer dropped an entry stamped 20
    await store.write(LEDGER_NAME, floor_raised.to_data(), version)
    refused = await admit("p2", 15)
    assert isinstance(refused, Finding) and refused.reason == "quota-unavailable"
    assert "pod watch (resourceVersion 15) is behind the quota ledger (resourceVersion 20)" in refused.message
    assert "p2" not in (await client.read()).reservations


async def _advance(store: FakeCluster, *, past: int) -> None:
    """Changes on `store` (a scratch ConfigMap) until its resourceVersion is past `past`, as the pod
    changes a real watch watermark counts would have moved it."""
    version: str | None = None
    while int(store.resource_version) <= past:
        version = await store.write("scratch", {"n": store.resource_version}, version)


async def test_a_floor_not_below_the_documents_own_version_is_ignored_not_a_wedge() -> None:
    """A ledger restored from another cluster (or hand-edited) may carry a floor no watch of this
    API server reaches: every decision would be refused as behind forever. A legitimate floor is
    below the document's resourceVersion; one that is not says nothing about this cluster."""
    store = FakeCluster()
    await _advance(store, past=40)
    client = LedgerClient(store, writer="replica-a", wall=lambda: 100.0)

    def admit(rid: str, watermark: int) -> Any:
        return client.run(
            lambda ledger: decide_reservation(ledger, res(rid, created=100.0), team=NLP, base={},
                                              visible=frozenset(), now=100.0, watermark=watermark),
            watermark=watermark,
        )

    await store.write(LEDGER_NAME, Ledger(floor=10**15).to_data(), None)
    data, version = await store.read(LEDGER_NAME)
    assert Ledger.from_data(data).floor == 10**15
    assert (await client.read()).floor == 0
    admitted = await admit("p", int(version) - 1)  # the pod watch stands at the last pod change
    assert isinstance(admitted, ReservationOutcome) and not admitted.excess
    data, version = await store.read(LEDGER_NAME)
    assert Ledger.from_data(data).floor == 0  # written back healed

    legit = Ledger.from_data(data)
    object.__setattr__(legit, "floor", int(version) - 1)  # raised by a write: below the version it made
    await store.write(LEDGER_NAME, legit.to_data(), version)
    assert (await client.read()).floor == int(version) - 1
    assert isinstance(await admit("q", int(version) - 2), Finding)  # behind it: refused as before


async def test_an_idle_writer_heartbeats_only_when_due_or_when_entries_wait_on_it() -> None:
    store = FakeCluster()
    wall = [100.0]
    client = LedgerClient(store, writer="idle", wall=lambda: wall[0])
    busy = LedgerClient(store, writer="busy", wall=lambda: wall[0])
    await busy.run(lambda ledger: ReservationOutcome(ledger.with_reservation(res("p"))), watermark=5)
    await client.read()
    assert client.wants_heartbeat(5, frozenset(), 100.0)  # entries, and not registered at all
    tidy = lambda ledger: ReservationOutcome(ledger.pruned(now=100.0, visible=frozenset(), watermark=5))  # noqa: E731
    await client.heartbeat(5, decide=tidy)
    assert not client.wants_heartbeat(5, frozenset(), 100.0)
    assert client.wants_heartbeat(6, frozenset({"p"}), 100.0)  # its watch now shows p: let it go
    assert not client.wants_heartbeat(6, frozenset(), 100.0)
    assert client.wants_heartbeat(6, frozenset(), 100.0 + HEARTBEAT_S)  # due
    assert not client.wants_heartbeat(None, frozenset({"p"}), 100.0 + HEARTBEAT_S)  # nothing to register


# ---- replicas and extender end to end (QuotaWorld: FakeCluster, real admitters) ---------------


async def test_a_replica_whose_watch_lags_far_beyond_the_old_settle_time_still_counts_the_pods() -> None:
    """What SETTLE_S protected only for lags under 30 s: replica 1's watch stands still for a
    minute while replica 0 (watch current) tidies; replica 1 keeps its reconciler running, so it
    stays registered and the entries of the pods it has not seen stay in the document."""
    world = QuotaWorld()
    for _ in range(2):
        assert await world.create(profile="a100-80gb", gpus=2, mutator=0, validator=0) is not None
    world.sync(0)
    world.sync(2)
    for _ in range(int(2 * SETTLE_S)):  # a minute, second by second: both reconcilers run
        world.clock.advance(1.0)
        for reconciler in world.reconcilers:
            await reconciler.once()
    assert await world.create(profile="a100-80gb", gpus=2, mutator=1, validator=1) is None
    assert "6 of 4 nvidia-a100-80gb GPUs (0 in use, 4 reserved by admissions in flight" in world.denials[-1]
    world.sync_all()
    for reconciler in world.reconcilers * 2:
        await reconciler.once()
    data, _ = await world.cluster.read(LEDGER_NAME)
    assert Ledger.from_data(data).reservations == {}  # in every watch now: gone at once, no 30 s wait


async def test_a_silent_lagging_replica_is_refused_until_its_watch_passes_the_floor() -> None:
    """A replica that neither writes nor tidies lapses after WRITER_LIVE_S: the others drop the
    entries its watch has not shown, and it decides nothing until its watch has caught up."""
    world = QuotaWorld()
    for _ in range(2):
        assert await world.create(profile="a100-80gb", gpus=2, mutator=0, validator=0) is not None
    world.sync(0)
    for _ in range(3):
        world.clock.advance(WRITER_LIVE_S)
        await world.reconcilers[0].once()
    data, _ = await world.cluster.read(LEDGER_NAME)
    assert Ledger.from_data(data).reservations == {} and Ledger.from_data(data).floor > 0
    assert await world.create(profile="a100-80gb", gpus=2, mutator=1, validator=1) is None
    assert "behind the quota ledger" in world.denials[-1]
    world.sync(1)
    assert await world.create(profile="a100-80gb", gpus=2, mutator=1, validator=1) is None
    assert "6 of 4 nvidia-a100-80gb GPUs (4 in use, 2 requested)" in world.denials[-1]  # counted by its watch
    assert await world.create(profile="a100-80gb", gpus=1, mutator=1, validator=1) is None  # 4 of 4 used
