"""Quota counts each pod once, the type is fixed at bind, prices are the bound type's (issue 14 §2-3,
issue 21 forged reservation/price): table tests per rule and a property over random histories,
through two webhook replicas and one extender over the in-memory cluster (tests/unit/quota_world.py)."""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission.plan import mutate
from accel.admission.validate import plan_validation
from accel.policy.models import ALL_TYPES
from accel.quota.ledger import Ledger, Reservation
from accel.quota.rules import LEDGER_NAME, ReservationOutcome, decide_reservation
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from tests.builders import example_policy, gpu_pod, make_context
from tests.builders import node_model as gpu_node
from tests.unit.quota_world import A100, H200, QuotaWorld
from tests.unit.test_quota import NLP
from webhook.reconcile import Reconciler

TYPE = "accelerator.opendatahub.io/type"


def small_a100_world(limit: int = 2) -> QuotaWorld:
    return QuotaWorld(example_policy(teams=[{"name": "nlp", "quota": {A100: limit, ALL_TYPES: 10}}]))


async def ledger_ids(world: QuotaWorld) -> set[str]:
    data, _ = await world.cluster.read(LEDGER_NAME)
    return set(Ledger.from_data(data).reservations)


# ---- issue 21: forged reservation ----------------------------------------------------------

async def test_a_burst_with_a_forged_reservation_id_stays_within_quota() -> None:
    world = small_a100_world(2)
    forged = {"accel.dev/reservation": "fixed-id"}
    stored = await asyncio.gather(
        *(
            world.create(
                profile="a100-80gb", gpus=1, mutator=i % 2, validator=(i + 1) % 2, annotations=forged
            )
            for i in range(6)
        )
    )
    assert sum(p is not None for p in stored) == 2
    assert "fixed-id" not in await ledger_ids(world)  # ids are the pods' uids, never the author's value
    assert len(world.denials) == 4 and all("would use 3 of 2 nvidia-a100-80gb" in d for d in world.denials), (
        world.denials
    )


async def test_reservations_are_keyed_to_the_pod_uid_and_counted_once() -> None:
    world = small_a100_world(4)
    for i in range(3):
        assert await world.create(profile="a100-80gb", gpus=1, validator=i % 2) is not None
    assert await ledger_ids(world) == {"pod-0", "pod-1", "pod-2"}
    world.sync(0)  # replica 0 sees the pods; replica 1 does not yet: both count each pod once
    assert await world.seen_usage(0) == await world.seen_usage(1) == {A100: 3, ALL_TYPES: 3}


# ---- issue 14 §3: freed at once --------------------------------------------------------------

async def test_delete_then_create_at_a_full_quota_is_admitted_at_once() -> None:
    world = small_a100_world(2)
    for _ in range(2):
        assert await world.create(profile="a100-80gb", gpus=1) is not None
    world.sync(0)
    assert await world.create(profile="a100-80gb", gpus=1) is None
    world.delete("train-0")
    world.sync(0)  # the watch shows the delete: no ledger write, no TTL, no reconciler needed
    assert await world.create(profile="a100-80gb", gpus=1) is not None


async def test_a_pod_rejected_by_a_later_step_frees_its_reservation_within_the_grace() -> None:
    world = small_a100_world(2)
    assert await world.create(profile="a100-80gb", gpus=1) is not None
    assert (
        await world.create(profile="a100-80gb", gpus=1, rejected_later=True) is None
    )  # e.g. a ResourceQuota
    world.sync_all()
    assert await world.create(profile="a100-80gb", gpus=1) is None
    assert "1 in use, 1 reserved by admissions in flight" in world.denials[-1]
    await world.reconcilers[1].once()  # before the grace: the pod may still be on its way
    assert len(await ledger_ids(world)) == 2
    await world.settle()  # grace over, the API server has no such pod: released
    assert await ledger_ids(world) == set()
    assert await world.create(profile="a100-80gb", gpus=1) is not None


async def test_a_dry_run_create_reserves_nothing() -> None:
    world = small_a100_world(1)
    assert await world.create(profile="a100-80gb", gpus=1, dry_run=True) is None
    assert await ledger_ids(world) == set() and world.denials == []
    assert await world.create(profile="a100-80gb", gpus=1) is not None


# ---- issue 14 §2: the type is fixed at bind --------------------------------------------------

async def test_multi_type_pod_falls_back_when_the_first_type_is_free_only_in_fragments() -> None:
    world = QuotaWorld()  # H200 free as 2 + 1 on two nodes
    pod = await world.create(profile="large-any", gpus=3)
    assert pod is not None and TYPE not in pod["metadata"]["annotations"]
    assert await world.bind(pod["metadata"]["name"]) == "a100-a"
    assert world.cluster.get("pods", "train-0", "nlp")["metadata"]["annotations"][TYPE] == A100  # type: ignore[index]
    assert world.wrong_prices() == []


async def test_a_full_type_quota_drops_that_type_at_filter_and_the_pod_lands_on_the_next() -> None:
    nodes = (
        gpu_node("h200-big", H200, "NVIDIA-H200", count=8),
        gpu_node("a100-a", A100, "NVIDIA-A100-SXM4-80GB"),
    )
    world = QuotaWorld(nodes=nodes)  # nlp: H200 3, A100 4, "*" 6
    first = await world.create(profile="large-any", gpus=2)
    second = await world.create(profile="large-any", gpus=2)
    assert first is not None and second is not None
    assert await world.bind("train-0") == "h200-big"
    world.sync_all()
    assert await world.bind("train-1") == "a100-a"  # 2 + 2 > 3 H200, though the node has room
    await world.settle()
    assert await world.seen_usage(0) == world.real_usage() == {H200: 2, A100: 2, ALL_TYPES: 4}


async def test_bind_refuses_when_another_bind_took_the_last_type_quota_meanwhile() -> None:
    nodes = (gpu_node("h200-big", H200, "NVIDIA-H200", count=8),)
    world = QuotaWorld(nodes=nodes)
    for _ in range(2):
        assert await world.create(profile="large-any", gpus=2) is not None
    world.sync(2)
    ext = world.extender
    gate = ext.gate
    assert gate is not None
    view = ext.state.view()
    pods = {p["metadata"]["name"]: p for p in world.pods()}
    from accel.cluster.pods import parse_pod  # the two binds race: both filtered before either wrote
    first, _ = await gate.convert(view, parse_pod(pods["train-0"]), "h200-big")
    _, error = await gate.convert(view, parse_pod(pods["train-1"]), "h200-big")
    assert first == "bound/pod-0" and "no nvidia-h200-141gb quota left" in error


async def test_a_pod_own_node_selector_is_respected_among_the_allowed_types() -> None:
    world = QuotaWorld()
    pod = await world.create(profile="large-any", gpus=1, annotations={})
    assert pod is not None
    patched = world.cluster.get("pods", "train-0", "nlp")
    assert patched is not None
    patched["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    world.cluster.apply(patched)
    assert await world.bind("train-0") in ("a100-a", "a100-b")


# ---- spec.nodeName ---------------------------------------------------------------------------

async def test_node_name_of_a_type_the_profile_does_not_allow_is_denied() -> None:
    world = QuotaWorld()
    assert await world.create(profile="a100-80gb", gpus=1, node_name="h200-a") is None
    assert 'spec.nodeName "h200-a" has nvidia-h200-141gb GPUs' in world.denials[-1]


async def test_node_name_pod_is_charged_and_priced_as_the_node_real_type() -> None:
    world = QuotaWorld()
    forged = {TYPE: "nvidia-l4-24gb", "accel.dev/cost-per-hour": "0.01"}
    pod = await world.create(profile="large-any", gpus=2, node_name="a100-b", annotations=forged)
    assert pod is not None and pod["metadata"]["annotations"][TYPE] == A100
    assert pod["metadata"]["annotations"]["accel.dev/cost-per-hour"] != "0.01"
    data, _ = await world.cluster.read(LEDGER_NAME)
    assert Ledger.from_data(data).reservations["pod-0"].type == A100
    assert world.wrong_prices() == []


async def test_node_name_of_an_unknown_node_is_denied() -> None:
    world = QuotaWorld()
    assert await world.create(profile="large-any", gpus=1, node_name="cpu-7") is None
    assert "not an accelerator node known to accel" in world.denials[-1]


# ---- issue 21: forged price ------------------------------------------------------------------

async def test_a_forged_price_is_overwritten_at_bind() -> None:
    world = QuotaWorld()
    forged = {"accel.dev/cost-per-hour": "0.01", "accel.dev/gpu-hour-price": "0.01"}
    pod = await world.create(profile="large-any", gpus=1, annotations=forged)
    assert pod is not None
    assert await world.bind("train-0") == "h200-a"
    notes = world.cluster.get("pods", "train-0", "nlp")["metadata"]["annotations"]  # type: ignore[index]
    assert notes["accel.dev/cost-per-hour"] != "0.01" and notes[TYPE] == H200
    assert world.wrong_prices() == []


# ---- mutation survivors ----------------------------------------------------------------------

async def test_a_denial_from_the_cached_ledger_is_decided_again_on_a_fresh_read() -> None:
    """serving/ledger.py `optimistic` branch: the cache may hold reservations another replica freed."""
    store = FakeCluster()
    mine, other = LedgerClient(store), LedgerClient(store)
    big = Reservation("a", "nlp", A100, Fraction(16), expires=100.0)
    assert isinstance(
        await mine.run(
            lambda ledger: decide_reservation(ledger, big, team=NLP, base={}, visible=frozenset(), now=0.0)
        ),
        ReservationOutcome,
    )
    await other.read()
    await other.run(
        lambda ledger: ReservationOutcome(ledger.without(["a"]))
    )  # freed elsewhere; `mine` has not seen it
    more = Reservation("b", "nlp", A100, Fraction(4), expires=100.0)
    outcome = await mine.run(
        lambda ledger: decide_reservation(ledger, more, team=NLP, base={}, visible=frozenset(), now=0.0)
    )
    assert isinstance(outcome, ReservationOutcome) and outcome.excess == ()


def test_max_gpus_per_pod_is_inclusive() -> None:
    policy = example_policy(maxGpusPerPod=4)
    ctx = make_context(policy=policy)
    for gpus, allowed in ((4, True), (5, False)):
        pod = gpu_pod(gpus=str(gpus))
        patched = mutate(pod, namespace="nlp", ctx=ctx).document or pod
        plan = plan_validation(patched, namespace="nlp", ctx=ctx, request_uid="u", now=0.0, dry_run=False)
        assert plan.decision.allowed is allowed, plan.decision.finding
        if not allowed:
            assert "maxGpusPerPod" in plan.decision.finding.message  # type: ignore[union-attr]


# ---- the property ----------------------------------------------------------------------------

PROFILES = ("large-any", "a100-80gb", "premium-h200")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(PROFILES), st.integers(1, 3), st.integers(0, 1),
                  st.integers(0, 1), st.booleans()),
        st.tuples(st.just("burst"), st.sampled_from(PROFILES), st.integers(1, 2), st.integers(2, 4)),
        st.tuples(st.just("bind"), st.integers(0, 20)),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("sync"), st.integers(0, 2)),
        st.tuples(st.just("tick"), st.floats(0.5, 8.0)),
        # Time passes while some watches stand still (far beyond the old SETTLE_S): the others'
        # reconcilers tidy meanwhile, the lagging replicas' passes run on their old snapshots.
        st.tuples(st.just("lag"), st.sets(st.integers(0, 2), max_size=2), st.floats(1.0, 50.0)),
    ),
    max_size=25,
)


def check_within_quota(world: QuotaWorld) -> None:
    real = world.real_usage()
    for key, limit in world.policy.policy.team("nlp").quota.items():  # type: ignore[union-attr]
        assert real.get(key, Fraction(0)) <= limit, (key, real)
    assert world.wrong_prices() == []


async def run_history(history: list[tuple[Any, ...]], forwarding: tuple[str, ...] = ()) -> None:
    world = QuotaWorld(forwarding=forwarding)
    for step in history:
        kind = step[0]
        if kind == "create":
            _, profile, gpus, mutator, validator, rejected = step
            await world.create(
                profile=profile, gpus=gpus, mutator=mutator, validator=validator, rejected_later=rejected
            )
        elif kind == "burst":
            _, profile, gpus, count = step
            await asyncio.gather(
                *(
                    world.create(profile=profile, gpus=gpus, mutator=i % 2, validator=(i + 1) % 2)
                    for i in range(count)
                )
            )
        elif kind in ("bind", "delete"):
            names = [p["metadata"]["name"] for p in (world.pending() if kind == "bind" else world.pods())]
            if names:
                name = names[step[1] % len(names)]
                await world.bind(name) if kind == "bind" else world.delete(name)
        elif kind == "sync":
            world.sync(step[1])
        elif kind == "lag":
            for who in step[1]:
                world.sync(who)
            world.clock.advance(step[2])
            for reconciler in world.reconcilers:
                await reconciler.once()
        else:  # time passes; every watch catches up within a tick
            world.sync_all()
            world.clock.advance(step[1])
            for reconciler in world.reconcilers:
                await reconciler.once()
        check_within_quota(world)
    await world.settle()
    real = {t: v for t, v in world.real_usage().items() if v}
    for replica in (0, 1):
        assert await world.seen_usage(replica) == real  # counted exactly once, nothing left over
    check_within_quota(world)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps)
def test_usage_equals_the_pods_that_exist_and_never_exceeds_quota(history: list[tuple[Any, ...]]) -> None:
    asyncio.run(run_history(history))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps, forwarding=st.lists(st.sampled_from(["answer", "lost", "refused"]), min_size=1,
                                         max_size=6))
def test_a_follower_forwarding_to_the_ledger_leader_never_exceeds_quota(
    history: list[tuple[Any, ...]], forwarding: list[str]
) -> None:
    """The same histories with replica 1 forwarding its quota steps to replica 0 (webhook/peer.py),
    each call answered, lost after the leader's write, or refused: the leader decides with its own
    (possibly lagging or ahead) snapshot, the follower falls back to its own CAS write of the same
    id, its reconciler registers through the leader: quota never exceeded, counted exactly once."""
    asyncio.run(run_history(history, tuple(forwarding)))


async def test_reconciler_waits_quietly_for_a_policy(caplog: pytest.LogCaptureFixture) -> None:
    """A replica whose policy ConfigMap is not read yet has nothing to tidy against: the pass is
    skipped without an error logged (it used to log a traceback every second until the policy came)."""
    world = QuotaWorld()
    admitter = world.replicas[0]
    admitter.state = ClusterState(catalog=world.policy.catalog, namespace="accel-system")
    reconciler = Reconciler(admitter, world.cluster)
    with caplog.at_level(logging.WARNING):
        assert await reconciler.once() == set()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_reconciler_tidies_with_the_context_in_force_without_building_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass reads `visible` and `watermark` of the context admissions decide with while it is
    recent (half the grace): a replica builds no context each second for its reconciler (a
    synchronous build per state generation, idle or busy); an older one is brought up to date first,
    and the entries the newer snapshot shows are then stamped and dropped as before."""
    world = small_a100_world(4)
    assert await world.create(profile="a100-80gb", gpus=1) is not None
    admitter = world.replicas[0]
    in_force = admitter.context()
    world.sync_all()  # a new state generation no admission has asked for yet
    assert admitter.state.view().generation > in_force.generation

    def no_build() -> object:
        raise AssertionError("the reconciler forced a context build")

    with monkeypatch.context() as patched:
        patched.setattr(admitter, "context", no_build)
        await world.reconcilers[0].once()
    assert admitter.recent_context(float("inf")) is in_force
    world.clock.advance(world.reconcilers[0].grace_s)  # the context in force is too old now
    await world.reconcilers[0].once()
    assert admitter.recent_context(float("inf")).generation == admitter.state.view().generation
    await world.settle()
    assert await ledger_ids(world) == set()  # every replica's watch shows the pod: dropped
