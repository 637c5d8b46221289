"""accel.quota.charges: memoised charges give exactly `accel.capacity.inventory`'s, generation after
generation."""

from __future__ import annotations

import copy
import functools
from collections.abc import Generator
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.context import build_context
from accel.capacity.inventory import (
    Inventory,
    pod_accelerator_type,
    pod_gpu_equivalents,
    team_usage,
)
from accel.cluster.pods import PodView
from accel.policy.models import ParsedPolicy
from accel.quota.charges import MAX_ENTRIES, STEP, ChargeMemo
from tests.builders import (
    DEFAULT_NODES,
    POLICY_DIR,
    TEAM_NAMESPACES,
    Sharing,
    example_policy,
    gpu_pod,
    make_inventory,
    node_model,
)

POLICY = example_policy()

PODS: dict[str, dict[str, Any]] = {
    "pending-a100": gpu_pod(name="p1", gpus="2"),
    "pending-time-sliced": gpu_pod(name="p2", profile="notebook-shared", resource="nvidia.com/gpu.shared"),
    "bound-time-sliced": gpu_pod(
        name="p3", profile="notebook-shared", resource="nvidia.com/gpu.shared", node="l4-1"
    ),
    "bound-mig": gpu_pod(
        name="p4",
        namespace="vision",
        profile="inference-mig",
        resource="nvidia.com/mig-1g.10gb",
        gpus="3",
        node="a100-mig",
    ),
    "bound-h100": gpu_pod(name="p5", namespace="research", profile="large-any", node="h100-1"),
    "team-from-pod-label": gpu_pod(name="p6", namespace="unlabelled", labels={"team": "platform"}),
    "no-team": gpu_pod(name="p7", namespace="kube-system", labels={"team": ""}),
    "zero-gpus": gpu_pod(name="p8", gpus="0"),
    "type-annotation": gpu_pod(
        name="p9", profile="large-any", annotations={"accelerator.opendatahub.io/type": "nvidia-h100-80gb"}
    ),
    "quota-type-annotation": gpu_pod(
        name="p10", profile="large-any", annotations={"accel.dev/quota-type": "nvidia-a100-80gb"}
    ),
    "bound-to-unknown-node": gpu_pod(name="p11", node="gone-1"),
    "kueue-queued": gpu_pod(name="p12", labels={"kueue.x-k8s.io/queue-name": "nlp-queue"}),
}


def reference(parsed: ParsedPolicy, inventory: Inventory) -> dict[str, dict[str, Any]]:
    return team_usage(inventory, catalog=parsed.catalog, policy=parsed.policy)


@pytest.mark.parametrize(
    "names",
    [[], list(PODS), ["pending-a100", "pending-time-sliced"], ["bound-mig", "no-team"]],
    ids=["empty-cluster", "every-kind-of-pod", "pending-only", "bound-and-teamless"],
)
def test_usage_equals_a_full_walk(names: list[str]) -> None:
    inventory = make_inventory([PODS[n] for n in names])
    assert ChargeMemo().usage(POLICY, inventory) == reference(POLICY, inventory)


def test_each_charge_equals_the_inventory_functions_even_from_a_shared_memo() -> None:
    memo = ChargeMemo()
    inventory = make_inventory(list(PODS.values()))
    for _ in range(2):  # second round: every answer from the memo
        for pod in inventory.pods:
            expected = (pod_accelerator_type(pod, inventory, POLICY.catalog),
                        pod_gpu_equivalents(pod, inventory, POLICY.catalog, POLICY.policy))
            assert memo.charge(pod, inventory, POLICY) == expected, pod.name


def test_pods_of_one_shape_are_charged_once_and_what_changed_is_recharged() -> None:
    memo = ChargeMemo()
    replicas = make_inventory(
        [gpu_pod(name=f"r{i}", annotations={"accel.dev/reservation": f"id-{i}"}) for i in range(5)]
    )
    memo.usage(POLICY, replicas)
    assert memo.computed == 1  # five replicas, one shape

    first = make_inventory(list(PODS.values()))
    memo.usage(POLICY, first)
    counted = memo.computed
    nodes = tuple(n.model_copy() if n.name == "l4-1" else n for n in first.nodes)  # l4-1 rebuilt by the watch
    second = Inventory(
        nodes=nodes, pods=first.pods, namespace_labels={**first.namespace_labels, "vision": {"team": "nlp"}}
    )
    assert memo.usage(POLICY, second) == reference(POLICY, second)  # vision's pod now counts for nlp
    # none recharged: the rebuilt node keeps its hardware object (accel.quota.pod_changes rule 2), and
    # vision's pods are recounted for their new team from the memoised charge
    assert memo.computed == counted

    other = example_policy()
    assert memo.usage(other, second) == reference(other, second)
    assert memo.computed > counted + 1  # a new policy object starts the memo afresh


def test_memo_is_bounded() -> None:
    memo = ChargeMemo()
    pods = [gpu_pod(name=f"p{i}", gpus=str(i + 1)) for i in range(MAX_ENTRIES + 5)]
    inventory = make_inventory(pods)
    assert memo.usage(POLICY, inventory) == reference(POLICY, inventory)
    assert len(memo._charges) <= MAX_ENTRIES


def test_next_generation_keeps_memos_only_while_their_inputs_are_the_same() -> None:
    inventory = make_inventory(list(PODS.values()))
    profile = POLICY.policy.profile("a100-80gb")
    assert profile is not None
    first = build_context(POLICY, inventory)
    selector = first.selector(profile, ("nvidia-a100-80gb",))
    prices = first.request_prices(profile, "nvidia-a100-80gb", {"nvidia.com/gpu": 1})

    pods_changed = build_context(
        POLICY, inventory.model_copy(update={"pods": inventory.pods[:2]}), previous=first
    )
    assert pods_changed.selector(profile, ("nvidia-a100-80gb",)) is selector
    assert pods_changed.request_prices(profile, "nvidia-a100-80gb", {"nvidia.com/gpu": 1}) is prices

    nodes = tuple(n.model_copy() for n in inventory.nodes)
    nodes_changed = build_context(POLICY, inventory.model_copy(update={"nodes": nodes}), previous=first)
    assert nodes_changed.selector(profile, ("nvidia-a100-80gb",)) is not selector
    assert nodes_changed.selector(profile, ("nvidia-a100-80gb",)) == selector
    assert nodes_changed.request_prices(profile, "nvidia-a100-80gb", {"nvidia.com/gpu": 1}) is prices

    other = example_policy()
    other_profile = other.policy.profile("a100-80gb")
    assert other_profile is not None
    policy_changed = build_context(other, inventory, previous=first)
    assert (
        policy_changed.request_prices(other_profile, "nvidia-a100-80gb", {"nvidia.com/gpu": 1}) is not prices
    )


def test_usage_in_steps_stays_exact_with_charges_for_another_inventory_in_between() -> None:
    """Rule 5: between the steps of `usage_steps` an admission may charge a pod against the previous
    generation's inventory (here the L4 node time-sliced 2 ways, not 4: another type index, so the
    memo resets each time, and a pending time-sliced pod counts 1/2, not 1/4); every charge and
    the usage are still the full walk's."""
    pods = [copy.deepcopy(pod) for _ in range(30) for pod in PODS.values()]  # every kind in every step
    for i, pod in enumerate(pods):
        pod["metadata"]["name"] = f"{pod['metadata']['name']}-{i}"
    relabelled = [
        node_model("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4,
                   replicas=2, sharing=Sharing.TIME_SLICED) if n.name == "l4-1" else n
        for n in DEFAULT_NODES
    ]
    now, before = make_inventory(pods), make_inventory(pods, nodes=relabelled)
    memo = ChargeMemo()
    memo.usage(POLICY, before)
    steps, pauses = memo.usage_steps(POLICY, now), 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            assert done.value == reference(POLICY, now)
            break
        pauses += 1
        for pod in before.pods[:len(PODS)]:
            expected = (pod_accelerator_type(pod, before, POLICY.catalog),
                        pod_gpu_equivalents(pod, before, POLICY.catalog, POLICY.policy))
            assert memo.charge(pod, before, POLICY) == expected
    assert pauses >= 2 and len(now.pods) > 2 * STEP
    assert memo.usage(POLICY, now) == reference(POLICY, now)
    assert reference(POLICY, now) != reference(POLICY, before)  # the labels matter to these pods


@functools.cache
def _pool() -> tuple[PodView, ...]:
    """Parsed pods of every kind, 40 objects each (all charges differ only by kind)."""
    views = []
    for copy_index in range(40):
        for name, pod in PODS.items():
            pod = copy.deepcopy(pod)
            pod["metadata"]["name"] = f"{name}-{copy_index}"
            views.extend(make_inventory([pod]).pods)
    return tuple(views)


GENERATION = st.tuples(
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),  # pods of the last one kept
    st.integers(min_value=0, max_value=len(PODS) * 40),  # where the pool's pods shown start
    st.integers(min_value=0, max_value=300),  # how many (more than a step's STEP: several steps)
    # the L4 node time-sliced 2 ways (another type index: a fresh count) instead of 4; mostly not, so
    # that most generations update the kept sums
    st.sampled_from([False, False, False, True]),
    st.booleans(),  # new node objects (a rebuilt inventory) rather than the last ones
    st.booleans(),  # between two steps: a charge of each kind of pod against the previous inventory
    st.sampled_from(["none", "drop", "hardware"]),  # one node gone, or its hardware object new
    # which node: each has a twin with the same labels and sharing, so the type index stays the same
    # (no fresh count) while the charges of the pods bound to it change
    st.sampled_from(["h100-1", "l4-1", "a100-mig", "a100-1"]),
    st.sampled_from(["same", "same", "copy", "moved", "unlabelled"]),  # namespaces kept, copied, changed
    st.sampled_from([0, 0, 0, 1, 2, 3]),  # the policy: the example, another object of it, teams by another
    # label, nlp managed by Kueue (its queued pods not counted)
)
TWINS = (
    node_model("h100-2", "nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3"),
    node_model("l4-2", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4, replicas=4,
               sharing=Sharing.TIME_SLICED),
)
L4_8_WAYS = node_model("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4,
                       replicas=8, sharing=Sharing.TIME_SLICED).accelerators  # the fewest stay 4 (l4-2)


def _kueue_policy() -> ParsedPolicy:
    teams = yaml.safe_load((POLICY_DIR / "teams.yaml").read_text())["teams"]
    return example_policy(teams=[{**t, "kueueManaged": t["name"] == "nlp"} for t in teams])


POLICIES = (POLICY, example_policy(), example_policy(teamLabel="owner"), _kueue_policy())
NAMESPACES = {
    "same": None,
    "copy": {ns: dict(labels) for ns, labels in TEAM_NAMESPACES.items()},
    "moved": {**TEAM_NAMESPACES, "vision": {"team": "nlp", "owner": "nlp"}, "nlp": {"owner": "research"}},
    "unlabelled": {**TEAM_NAMESPACES, "research": {}},
}


@settings(max_examples=80, deadline=None)
@given(generations=st.lists(GENERATION, min_size=1, max_size=6))
def test_property_usage_in_steps_equals_a_full_walk_generation_after_generation(
    generations: list[tuple[list[int], int, int, bool, bool, bool, str, str, str, int]],
) -> None:
    """Random generations (pods kept by object, new ones, dropped ones; node labels changed or
    not; nodes rebuilt or kept, one gone or with a new hardware object; namespace labels kept,
    copied or changed; the policy kept, re-parsed or with another team label), one memo across
    them, each usage run in steps with charges for the previous generation's inventory in between
    (what admissions still on it do): every usage equals `team_usage` of its inventory, every
    interleaved charge the inventory functions'. The memo keeps its sums from generation to
    generation (rule 4): breaking that bookkeeping fails this test."""
    pool, base, memo = _pool(), make_inventory(nodes=DEFAULT_NODES + TWINS), ChargeMemo()
    sliced = tuple(
        node_model("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4,
                   replicas=2, sharing=Sharing.TIME_SLICED) if n.name == "l4-1" else n
        for n in base.nodes
    )
    previous: Inventory | None = None
    previous_policy = POLICY
    namespaces = base.namespace_labels
    for kept, start, count, relabel, rebuild, between, node_change, which, labels, policy_at in generations:
        parsed = POLICIES[policy_at]
        last = previous.pods if previous is not None else ()
        pods = [last[i % len(last)] for i in kept] if last else []
        pods += [pool[i % len(pool)] for i in range(start, start + count)]
        nodes = sliced if relabel else base.nodes
        if rebuild:
            nodes = tuple(n.model_copy() for n in nodes)  # the same hardware objects (rebound pods)
        if node_change == "drop":  # its bound pods now count as pending ones
            nodes = tuple(n for n in nodes if n.name != which)
        elif node_change == "hardware":  # a new NodeAccelerators object: l4-1 shared 8 ways, else equal
            hardware = L4_8_WAYS if which == "l4-1" and not relabel else None
            nodes = tuple(
                n.model_copy(update={"accelerators": hardware or n.accelerators.model_copy()})
                if n.name == which else n
                for n in nodes
            )
        namespaces = NAMESPACES[labels] or namespaces
        unique = tuple({id(pod): pod for pod in pods}.values())  # one object shown once
        # built anew, not `model_copy`: that would keep the node index of `base` (a private attribute)
        inventory = Inventory(nodes=nodes, pods=unique, namespace_labels=namespaces)
        steps = memo.usage_steps(parsed, inventory)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                assert done.value == reference(parsed, inventory)
                break
            kinds = {pod.name.rsplit("-", 1)[0]: pod for pod in previous.pods} if previous and between else {}
            for pod in kinds.values():
                assert previous is not None
                expected = (pod_accelerator_type(pod, previous, POLICY.catalog),
                            pod_gpu_equivalents(pod, previous, POLICY.catalog, previous_policy.policy))
                assert memo.charge(pod, previous, previous_policy) == expected
        previous, previous_policy = inventory, parsed


def test_a_fold_left_half_done_or_overtaken_still_gives_exact_usage() -> None:
    """Rule 4: a usage in steps abandoned after its first step (a build that failed) or overtaken by
    another before its end (a second build) leaves the kept sums to the next call, which starts
    over; the overtaken one finishes with a walk of its own, exact too."""
    pool, memo = _pool(), ChargeMemo()
    first = make_inventory().model_copy(update={"pods": pool[:STEP]})
    second = first.model_copy(update={"pods": pool[STEP:]})  # several steps: 3 * STEP > 312 > 2 * STEP
    third = first.model_copy(update={"pods": pool[50:300]})
    assert 2 * STEP < len(second.pods) < 3 * STEP
    assert memo.usage(POLICY, first) == reference(POLICY, first)
    abandoned = memo.usage_steps(POLICY, second)
    next(abandoned)
    next(abandoned)
    abandoned.close()
    assert memo.usage(POLICY, third) == reference(POLICY, third)
    overtaken = memo.usage_steps(POLICY, second)
    next(overtaken)
    assert memo.usage(POLICY, first) == reference(POLICY, first)  # the newer fold owns the sums
    assert _finish(overtaken) == reference(POLICY, second)
    assert memo.usage(POLICY, third) == reference(POLICY, third)


def _finish(steps: Generator[None, None, dict[str, dict[str, Fraction]]]) -> dict[str, dict[str, Fraction]]:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def test_pods_on_a_changed_node_are_recharged_from_the_kept_sums() -> None:
    """accel.quota.pod_changes rule 2: a node gone (its twin keeps the type index) or with other
    hardware (L4 shared 8 ways; the fewest stay 4) recharges exactly its pods, without a fresh count."""
    pool, memo = _pool(), ChargeMemo()
    nodes = DEFAULT_NODES + TWINS
    without_h100 = tuple(n for n in nodes if n.name != "h100-1")
    l4_8_ways = tuple(
        n.model_copy(update={"accelerators": L4_8_WAYS}) if n.name == "l4-1" else n for n in nodes
    )
    without_mig = tuple(n for n in nodes if n.name != "a100-mig")
    before = memo.computed
    for shown in (nodes, without_h100, nodes, l4_8_ways, without_mig, nodes):
        inventory = Inventory(nodes=shown, pods=pool, namespace_labels=TEAM_NAMESPACES)
        assert memo.usage(POLICY, inventory) == reference(POLICY, inventory)
    assert memo.computed - before < 2 * len(PODS) + 6  # each kind once, then the bound ones again


def test_folds_overtaking_each_other_in_steps_stay_exact() -> None:
    """Rule 4: fold A in steps, B starts (fresh: A is unfinished) and pauses, A ends with a walk of its
    own, C runs whole (fresh: B is unfinished), B ends with its own walk; all exact, and so is D after."""
    pool, memo = _pool(), ChargeMemo()
    shown = [make_inventory().model_copy(update={"pods": pool[i * 40: i * 40 + 3 * STEP]}) for i in range(4)]
    a = memo.usage_steps(POLICY, shown[0])
    next(a)
    b = memo.usage_steps(POLICY, shown[1])
    next(b)
    assert _finish(a) == reference(POLICY, shown[0])
    assert memo.usage(POLICY, shown[2]) == reference(POLICY, shown[2])
    assert _finish(b) == reference(POLICY, shown[1])
    assert memo.usage(POLICY, shown[3]) == reference(POLICY, shown[3])
    assert memo.usage(POLICY, shown[0]) == reference(POLICY, shown[0])


def test_a_pod_shown_twice_counts_twice_like_the_full_walk() -> None:
    """accel.quota.pod_changes rule 5 (the inventory never does it, but the sum stays the walk's)."""
    inventory = make_inventory(list(PODS.values()))
    twice = inventory.model_copy(update={"pods": inventory.pods + inventory.pods[:3]})
    memo = ChargeMemo()
    for shown in (inventory, twice, twice, inventory):
        assert memo.usage(POLICY, shown) == reference(POLICY, shown)
