"""The quota ledger leader (serving/ledger_leader.py) and forwarding to it (serving/ledger.py
`Forwarder`, webhook/peer.py): election and failover on the fake API server, fallback to a local
CAS write, idempotent retries, and never an admission over quota however forwards fail."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.messages import Finding
from accel.policy.models import Team
from accel.quota.ledger import Ledger, Reservation
from accel.quota.rules import LEDGER_NAME, ReservationOutcome, decide_reservation
from kube.fake import FakeCluster
from kube.names import LEDGER_LEADER_LEASE
from kube.testing import ManualClock, RecordingSleep
from serving.ledger import LedgerClient, Result
from serving.ledger_leader import PEER_ANNOTATION, LedgerLeadership
from tests.unit.test_quota import res
from webhook.peer import decode_request, decode_result, encode_result

TEAM = Team(name="nlp", quota={"*": Decimal(4)})


def leadership(cluster: FakeCluster, clock: ManualClock, name: str, **kwargs: Any) -> LedgerLeadership:
    return LedgerLeadership(cluster, identity=name, peer_url=f"https://{name}:9443", clock=clock, **kwargs)


# ---- election -----------------------------------------------------------------------------------


async def test_one_replica_takes_the_lease_and_the_other_forwards_to_it() -> None:
    cluster, clock = FakeCluster(), ManualClock()
    a, b = leadership(cluster, clock, "a"), leadership(cluster, clock, "b")
    await a.step()
    await b.step()
    assert a.leading and not b.leading
    assert a.forward_to() is None  # the leader writes itself
    assert b.forward_to() == "https://a:9443"
    lease = cluster.get("leases", LEDGER_LEADER_LEASE, cluster.controller_namespace)
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"
    assert lease["metadata"]["annotations"][PEER_ANNOTATION] == "https://a:9443"
    for _ in range(10):  # renewals keep it: b never takes a fresh lease
        clock.advance(1.0)
        await a.step()
        await b.step()
    assert a.leading and b.forward_to() == "https://a:9443"


async def test_a_leader_that_stops_renewing_is_replaced_after_the_lease() -> None:
    """E.g. SIGSTOPped: its Lease's version stops changing; after leaseDurationSeconds on the
    follower's own clock the follower takes it, and the old leader, resumed, follows."""
    cluster, clock = FakeCluster(), ManualClock()
    a, b = leadership(cluster, clock, "a"), leadership(cluster, clock, "b")
    await a.step()
    await b.step()
    clock.advance(a.lease_s - 0.5)
    await b.step()
    assert b.forward_to() == "https://a:9443" and not b.leading  # not yet expired
    clock.advance(0.5)
    assert b.forward_to() is None  # expired: b writes itself even before it takes the lead
    await b.step()
    assert b.leading
    assert not a.leading  # its own renewal is older than the lease
    await a.step()  # resumed: sees b's fresh Lease
    assert not a.leading and a.forward_to() == "https://b:9443"


async def test_a_replica_that_is_not_ready_neither_takes_nor_keeps_the_lease() -> None:
    cluster, clock = FakeCluster(), ManualClock()
    ready = {"a": False}
    a = leadership(cluster, clock, "a", ready=lambda: ready["a"])
    b = leadership(cluster, clock, "b")
    await a.step()
    assert not a.leading
    await b.step()
    assert b.leading
    await b.release()  # shutdown: given up at once
    await a.step()
    assert not a.leading and a.forward_to() is None
    ready["a"] = True
    await a.step()
    assert a.leading


async def test_two_replicas_racing_for_a_free_lease_elect_one() -> None:
    cluster, clock = FakeCluster(sleep=RecordingSleep()), ManualClock()
    cluster.set_latency(0.01)  # both read the free Lease before either writes
    a, b = leadership(cluster, clock, "a"), leadership(cluster, clock, "b")
    await asyncio.gather(a.step(), b.step())
    assert [a.leading, b.leading].count(True) == 1


async def test_lease_errors_drop_the_lead_and_forwarding_lapses() -> None:
    from kube.errors import Unreachable

    cluster, clock = FakeCluster(), ManualClock()
    a, b = leadership(cluster, clock, "a"), leadership(cluster, clock, "b")
    await a.step()
    await b.step()
    cluster.fail_next("leases", Unreachable("down"), times=100)
    task = asyncio.create_task(b.run())
    await asyncio.sleep(0)
    clock.advance(a.lease_s)
    assert b.forward_to() is None  # b cannot see a renew: it writes itself
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# ---- forwarding ---------------------------------------------------------------------------------


def decide(rid: str, team: Team = TEAM) -> Any:
    return lambda ledger: decide_reservation(
        ledger, res(rid), team=team, base={}, visible=frozenset(), now=0.0
    )


class LeaderForwarder:
    """A `Forwarder` that hands each request to the leader's own LedgerClient, as the peer route
    does; `mode(i)` picks per call: "answer", "lost" (decided and written, answer lost: a timeout
    after the leader's write), "refused" (not decided: leader unreachable) or "raise"."""

    def __init__(self, leader: LedgerClient, mode: Any = lambda _i: "answer", team: Team = TEAM) -> None:
        self.leader = leader
        self.mode = mode
        self.team = team
        self.calls = 0
        self.writers: list[tuple[str, int] | None] = []

    def target(self) -> str | None:
        return "https://leader"

    async def forward(
        self, target: str, requests: list[Any], writer: tuple[str, int] | None = None
    ) -> list[Result | None]:
        self.writers.append(writer)
        mode = self.mode(self.calls)
        self.calls += 1
        if mode == "raise":
            raise ConnectionError("peer unreachable")
        if mode == "refused":
            return [None] * len(requests)
        peer = (writer[0], writer[1]) if writer is not None else None
        outcomes = await asyncio.gather(
            *(self.leader.run(decide(rid, self.team), peer=peer) for rid in requests)
        )
        if mode == "lost":
            return [None] * len(requests)
        return [decode_result(encode_result(o)) for o in outcomes]


async def test_forwarded_decisions_are_written_by_the_leader_only() -> None:
    cluster = FakeCluster()
    leader, follower = (LedgerClient(cluster, sleep=RecordingSleep()) for _ in range(2))
    follower.forwarder = forwarder = LeaderForwarder(leader)
    outcomes = await asyncio.gather(*(follower.run(decide(f"r{i}"), forward=f"r{i}") for i in range(6)))
    assert [bool(getattr(o, "excess", True)) for o in outcomes] == [False] * 4 + [True] * 2
    assert follower.writes == 0 and follower.conflicts == 0 and leader.writes >= 1
    assert forwarder.calls == 1  # one batch, one call
    denied = outcomes[-1]
    assert isinstance(denied, ReservationOutcome) and denied.excess[0].limit == 4  # the message's figures
    data, _ = await cluster.read(LEDGER_NAME)
    assert set(Ledger.from_data(data).reservations) == {"r0", "r1", "r2", "r3"}


async def test_the_leader_registers_the_forwarding_writer_with_its_write() -> None:
    """Ledger rule 5 without a write of the follower's own: the leader's write registers the
    follower at the oldest watermark of the decisions it forwarded."""
    cluster = FakeCluster()
    leader, follower = LedgerClient(cluster, writer="leader"), LedgerClient(cluster, writer="follower")
    follower.forwarder = forwarder = LeaderForwarder(leader)
    await asyncio.gather(follower.run(decide("r0"), watermark=7, forward="r0"),
                         follower.run(decide("r1"), watermark=5, forward="r1"))
    assert forwarder.writers == [("follower", 5)]
    data, _ = await cluster.read(LEDGER_NAME)
    written = Ledger.from_data(data)
    assert written.writers["follower"].watermark == 5 and follower.writes == 0


async def test_decisions_without_a_forward_form_or_when_nobody_leads_are_written_here() -> None:
    cluster = FakeCluster()
    leader, follower = LedgerClient(cluster), LedgerClient(cluster)
    follower.forwarder = forwarder = LeaderForwarder(leader)
    await follower.run(decide("tidy"))  # e.g. the reconciler's write: no forward form
    assert follower.writes == 1 and forwarder.calls == 0
    forwarder.target = lambda: None  # type: ignore[method-assign]  # nobody leads
    await follower.run(decide("r1"), forward="r1")
    assert follower.writes == 2 and forwarder.calls == 0


async def test_a_lost_answer_falls_back_to_a_local_write_of_the_same_id_counted_once() -> None:
    """The leader wrote r0 but its answer never came (timeout): the follower decides r0 itself;
    the id overwrites itself and excludes itself from its own decision, so quota 4 still admits
    exactly four and the ledger holds r0 once."""
    cluster = FakeCluster()
    leader, follower = LedgerClient(cluster), LedgerClient(cluster)
    follower.forwarder = LeaderForwarder(leader, mode=lambda i: "lost" if i == 0 else "answer")
    first = await follower.run(decide("r0"), forward="r0")
    assert isinstance(first, ReservationOutcome) and not first.excess
    assert follower.writes == 1  # the fallback's own write
    rest = [await follower.run(decide(f"r{i}"), forward=f"r{i}") for i in range(1, 6)]
    assert [bool(getattr(o, "excess", True)) for o in rest] == [False] * 3 + [True] * 2
    data, _ = await cluster.read(LEDGER_NAME)
    assert sorted(Ledger.from_data(data).reservations) == ["r0", "r1", "r2", "r3"]


async def test_an_unreachable_leader_falls_back_to_local_writes() -> None:
    cluster = FakeCluster()
    leader, follower = LedgerClient(cluster), LedgerClient(cluster)
    follower.forwarder = LeaderForwarder(leader, mode=lambda _i: "raise")
    outcomes = await asyncio.gather(*(follower.run(decide(f"r{i}"), forward=f"r{i}") for i in range(5)))
    assert [bool(getattr(o, "excess", True)) for o in outcomes] == [False] * 4 + [True]
    assert leader.writes == 0 and follower.writes >= 1


@settings(max_examples=40, deadline=None)
@given(
    quota=st.integers(min_value=0, max_value=8),
    callers=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=20),
    modes=st.lists(st.sampled_from(["answer", "lost", "refused", "raise"]), min_size=1, max_size=8),
    leader_writes_too=st.booleans(),
)
async def test_no_mix_of_forwards_fallbacks_and_direct_writes_admits_over_quota(
    quota: int, callers: list[int], modes: list[str], leader_writes_too: bool
) -> None:
    """Two replicas on one ledger: replica 1 forwards to replica 0, each call answered, lost after
    the leader's write, refused or failing (drawn); replica 0 admits its own pods meanwhile (or
    replica 1 only). Whatever the mix: the admitted set is exactly min(quota, asks) pods and is
    what the ledger holds (a lost answer's entry is the same id as its local retry)."""
    cluster = FakeCluster(sleep=RecordingSleep())
    cluster.set_latency(0.01)  # every store call yields: the two writers interleave
    team = Team(name="nlp", quota={"*": Decimal(quota)})
    leader, follower = (LedgerClient(cluster, sleep=RecordingSleep()) for _ in range(2))
    follower.forwarder = LeaderForwarder(leader, mode=lambda i: modes[i % len(modes)], team=team)
    replicas = [leader, follower] if leader_writes_too else [follower, follower]
    outcomes = await asyncio.gather(
        *(replicas[c].run(decide(f"r{i}", team), forward=f"r{i}") for i, c in enumerate(callers))
    )
    assert not any(isinstance(o, Finding) for o in outcomes), outcomes
    admitted = {f"r{i}" for i, o in enumerate(outcomes) if isinstance(o, ReservationOutcome) and not o.excess}
    data, _ = await cluster.read(LEDGER_NAME)
    held = set(Ledger.from_data(data).reservations)
    assert admitted <= held  # every admission is reserved
    assert len(held) <= quota  # a lost answer's entry is one of the ids, never one more
    assert len(admitted) == min(quota, len(callers)) or held - admitted  # only lost-then-denied may differ


# ---- the wire form ------------------------------------------------------------------------------


def test_a_request_and_an_outcome_survive_the_wire_exactly() -> None:
    from accel.admission.validate import QuotaRequest
    from webhook.peer import encode_request

    reservation = Reservation(id="uid-1", team="nlp", type="", amount=Fraction(3, 7), namespace="ns",
                              created=1.5, expires=121.5, name="pod-1", job="train")
    request = QuotaRequest(reservation, TEAM, True, {"nvidia-a100-80gb": Fraction(3, 7)})
    team, decoded, commit, candidates = decode_request(encode_request(request), 0)
    assert (team, decoded, commit) == ("nlp", reservation, True)
    assert candidates == {"nvidia-a100-80gb": Fraction(3, 7)}
    outcome = decide_reservation(Ledger(), res("x", 5), team=TEAM, base={}, visible=frozenset(), now=0.0)
    back = decode_result(encode_result(outcome))
    assert back is not None and back.excess == outcome.excess and back.usage == outcome.usage
    assert decode_result({"local": "team unknown"}) is None
    assert decode_result({"excess": [{"team": "nlp"}], "usage": {}}) is None  # garbled: decide here


# ---- the follower's reconciler ----------------------------------------------------------------


async def test_a_following_replica_registers_through_the_leader_and_writes_nothing_itself() -> None:
    from tests.unit.quota_world import QuotaWorld

    world = QuotaWorld(forwarding=("answer",))
    leader, follower = (replica.ledger for replica in world.replicas)
    assert leader is not None and follower is not None
    for _ in range(3):
        assert await world.create(profile="a100-80gb", gpus=1, validator=1) is not None
    assert follower.writes == 0 and leader.writes >= 1
    world.sync_all()  # every watch shows the three pods: their entries wait on every registration
    synced = world.watermark()
    # past half the grace: the reconcilers tidy with the current generation, not the context in force
    world.clock.advance(world.reconcilers[1].grace_s / 2 + 0.5)
    await world.reconcilers[1].once()
    assert follower.writes == 0  # registered through the leader, no tidy write racing it
    data, _ = await world.cluster.read(LEDGER_NAME)
    assert Ledger.from_data(data).writers[follower.writer].watermark == synced
    await world.reconcilers[0].once()  # the leader's tidy stamps them with its watermark,
    await world.reconcilers[0].once()  # and drops them: every live writer's watch has passed it
    data, _ = await world.cluster.read(LEDGER_NAME)
    assert not Ledger.from_data(data).reservations and follower.writes == 0


async def test_a_following_replica_whose_leader_is_gone_registers_itself() -> None:
    from tests.unit.quota_world import QuotaWorld

    world = QuotaWorld(forwarding=("refused",))
    follower = world.replicas[1].ledger
    assert follower is not None
    assert await world.create(profile="a100-80gb", gpus=1, validator=1) is not None
    assert follower.writes == 1  # decided itself
    world.sync_all()
    world.clock.advance(3.0)
    await world.reconcilers[1].once()
    assert follower.writes == 2  # its own registration write
