"""accel.quota.charges: memoised charges give exactly `accel.capacity.inventory`'s, generation after
generation."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
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
from tests.builders import DEFAULT_NODES, Sharing, example_policy, gpu_pod, make_inventory, node_model

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
    assert memo.computed == counted + 1  # only the pod bound to the rebuilt node

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
    st.booleans(),  # the L4 node time-sliced 2 ways (another type index) instead of 4
    st.booleans(),  # new node objects (a rebuilt inventory) rather than the last ones
    st.booleans(),  # between two steps: a charge of each kind of pod against the previous inventory
)


@settings(max_examples=60, deadline=None)
@given(generations=st.lists(GENERATION, min_size=1, max_size=6))
def test_property_usage_in_steps_equals_a_full_walk_generation_after_generation(
    generations: list[tuple[list[int], int, int, bool, bool, bool]],
) -> None:
    """Random generations (pods kept by object, new ones, dropped ones; node labels changed or
    not; nodes rebuilt or kept), one memo across them, each usage run in steps with charges for
    the previous generation's inventory in between (what admissions still on it do): every usage
    equals `team_usage` of its inventory, every interleaved charge the inventory functions'."""
    pool, base, memo = _pool(), make_inventory(), ChargeMemo()
    sliced = tuple(
        node_model("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4,
                   replicas=2, sharing=Sharing.TIME_SLICED) if n.name == "l4-1" else n
        for n in base.nodes
    )
    previous: Inventory | None = None
    for kept, start, count, relabel, rebuild, between in generations:
        last = previous.pods if previous is not None else ()
        pods = [last[i % len(last)] for i in kept] if last else []
        pods += [pool[i % len(pool)] for i in range(start, start + count)]
        nodes = sliced if relabel else base.nodes
        if rebuild:
            nodes = tuple(n.model_copy() for n in nodes)
        unique = tuple({id(pod): pod for pod in pods}.values())  # one object shown once
        inventory = base.model_copy(update={"pods": unique, "nodes": nodes})
        steps = memo.usage_steps(POLICY, inventory)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                assert done.value == reference(POLICY, inventory)
                break
            kinds = {pod.name.rsplit("-", 1)[0]: pod for pod in previous.pods} if previous and between else {}
            for pod in kinds.values():
                expected = (pod_accelerator_type(pod, previous, POLICY.catalog),
                            pod_gpu_equivalents(pod, previous, POLICY.catalog, POLICY.policy))
                assert memo.charge(pod, previous, POLICY) == expected
        previous = inventory
