"""accel.admission_usage: the per-pod memo gives exactly `accel.inventory.team_usage`, generation after generation."""

from __future__ import annotations

from typing import Any

import pytest

from accel.admission_usage import UsageMemo
from accel.inventory import Inventory, team_usage
from accel.policy import ParsedPolicy
from tests.unit.admission_fixtures import example_policy, gpu_pod, make_inventory

POLICY = example_policy()

PODS: dict[str, dict[str, Any]] = {
    "pending-a100": gpu_pod(name="p1", gpus="2"),
    "pending-time-sliced": gpu_pod(name="p2", profile="notebook-shared", resource="nvidia.com/gpu.shared"),
    "bound-time-sliced": gpu_pod(name="p3", profile="notebook-shared", resource="nvidia.com/gpu.shared", node="l4-1"),
    "bound-mig": gpu_pod(name="p4", namespace="vision", profile="inference-mig", resource="nvidia.com/mig-1g.10gb",
                         gpus="3", node="a100-mig"),
    "bound-h100": gpu_pod(name="p5", namespace="research", profile="large-any", node="h100-1"),
    "team-from-pod-label": gpu_pod(name="p6", namespace="unlabelled", labels={"team": "platform"}),
    "no-team": gpu_pod(name="p7", namespace="kube-system", labels={"team": ""}),
    "zero-gpus": gpu_pod(name="p8", gpus="0"),
}


def reference(parsed: ParsedPolicy, inventory: Inventory) -> dict[str, dict[str, Any]]:
    return team_usage(inventory, catalog=parsed.catalog, policy=parsed.policy)


@pytest.mark.parametrize("names", [[], list(PODS), ["pending-a100", "pending-time-sliced"], ["bound-mig", "no-team"]],
                         ids=["empty-cluster", "every-kind-of-pod", "pending-only", "bound-and-teamless"])
def test_first_generation_equals_a_full_walk(names: list[str]) -> None:
    inventory = make_inventory([PODS[n] for n in names])
    assert UsageMemo().usage(POLICY, inventory) == reference(POLICY, inventory)


def test_later_generations_reuse_unchanged_pods_and_recompute_what_changed() -> None:
    memo = UsageMemo()
    first = make_inventory(list(PODS.values()))
    memo.usage(POLICY, first)
    counted = memo.computed
    keep = tuple(p for p in first.pods if p.name != "p1")  # p1 finished; the rest are the same objects
    second = first.model_copy(update={"pods": keep})
    assert memo.usage(POLICY, second) == reference(POLICY, second)
    assert memo.computed == counted  # nothing recomputed

    nodes = tuple(n.model_copy() if n.name == "l4-1" else n for n in second.nodes)  # l4-1 rebuilt by the watch
    third = Inventory(nodes=nodes, pods=keep, namespace_labels={**second.namespace_labels, "vision": {"team": "nlp"}})
    assert memo.usage(POLICY, third) == reference(POLICY, third)  # vision's pod now counts for nlp
    assert memo.computed == counted + 1  # only the pod bound to the rebuilt node

    other_policy = example_policy()
    assert memo.usage(other_policy, third) == reference(other_policy, third)
    teamed = [p for p in keep if third.team_of(p.namespace, "team") or p.labels.get("team")]
    assert memo.computed == counted + 1 + len(teamed)  # a new policy recomputes every charged pod
