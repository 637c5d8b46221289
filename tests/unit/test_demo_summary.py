"""The demo's summary math: decisions, placements, preference hits, chargeback, fragmentation."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from accel.capacity.inventory import build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.pods import parse_pod
from accel.placement.workload_mix import WorkloadHistogram
from cli.demo_summary import (
    ClusterSample,
    PodOutcome,
    chargeback,
    decision_counts,
    job_placements,
    never_started,
    observe_shape,
    placements_per_type,
    preference_rates,
    sample_cluster,
    time_weighted_mean,
)
from kube.testing import make_node, make_pod

CATALOG = load_builtin_catalog()
LARGE = ("nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb")


def ran(name: str, team: str, accel_type: str, *, gpus: int = 8, price: str | None = "10", hours: float = 2.0,
        profile: str = "large-any", types: tuple[str, ...] = LARGE) -> PodOutcome:
    return PodOutcome(
        name=name,
        team=team,
        kind="training",
        profile=profile,
        admitted=True,
        node=f"node-{accel_type}",
        accel_type=accel_type,
        node_type=accel_type,
        profile_types=types,
        gpus=Fraction(gpus),
        cost_per_hour=Decimal(price) if price else None,
        started_h=1.0,
        finished_h=1.0 + hours,
    )


def denied(name: str, reason: str) -> PodOutcome:
    return PodOutcome(
        name=name, team="nlp", kind="over-quota", profile=None, admitted=False, reason=reason, message="why"
    )


OUTCOMES = [
    ran("a", "nlp", "nvidia-h200-141gb"),
    ran("b", "nlp", "nvidia-h100-80gb", price="7.5", hours=4.0),
    ran("c", "research", "nvidia-a100-80gb", price="3.3333", hours=1.5),
    ran(
        "d", "vision", "nvidia-a100-80gb", gpus=2, price="5", profile="a100-80gb", types=("nvidia-a100-80gb",)
    ),
    PodOutcome(
        name="e", team="nlp", kind="training", profile="large-any", admitted=True, profile_types=LARGE
    ),  # gave up
    denied("f", "quota-exceeded"),
    denied("g", "quota-exceeded"),
    denied("h", "missing-labels"),
]


def test_decision_counts_by_reason() -> None:
    assert decision_counts(OUTCOMES) == {
        ("admitted", ""): 5,
        ("denied", "quota-exceeded"): 2,
        ("denied", "missing-labels"): 1,
    }


def test_placements_count_only_pods_that_ran_gpus() -> None:
    assert placements_per_type(OUTCOMES) == {
        "nvidia-a100-80gb": 2,
        "nvidia-h100-80gb": 1,
        "nvidia-h200-141gb": 1,
    }


def test_preference_rates_rate_multi_type_profiles_only() -> None:
    rates = preference_rates(OUTCOMES)
    assert set(rates) == {"large-any"}
    rate = rates["large-any"]
    assert (rate.hits, rate.fallbacks, rate.placed) == (1, 2, 3)
    assert rate.hit_rate == pytest.approx(1 / 3)
    assert rate.by_type == {"nvidia-h200-141gb": 1, "nvidia-h100-80gb": 1, "nvidia-a100-80gb": 1}


def test_chargeback_is_cost_per_hour_times_hours_and_sums_exactly() -> None:
    bill = chargeback(OUTCOMES)
    assert bill.by_team_type["nlp"] == {
        "nvidia-h200-141gb": Decimal("20.0"),
        "nvidia-h100-80gb": Decimal("30.0"),
    }
    assert bill.by_team_type["research"] == {"nvidia-a100-80gb": Decimal("4.99995")}
    assert bill.team_total("nlp") == Decimal(50)
    assert bill.total == Decimal("20") + Decimal("30") + Decimal("4.99995") + Decimal("10")
    assert bill.gpu_hours["nlp"]["nvidia-h100-80gb"] == pytest.approx(32.0)
    assert "e" not in {o.name for o in OUTCOMES if o.charge}


def test_unpriced_or_unstarted_pods_cost_nothing() -> None:
    assert ran("x", "nlp", "unknown", price=None).charge == 0
    assert (
        PodOutcome(name="y", team="t", kind="k", profile=None, admitted=True, cost_per_hour=Decimal(3)).charge
        == 0
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], 0.0), ([4.0], 4.0), ([2.0, 6.0, 100.0], 4.0)],
    ids=["no-samples", "one-sample", "step-function-ignores-last-value"],
)
def test_time_weighted_mean(values: list[float], expected: float) -> None:
    samples = [
        ClusterSample(t_h=float(i), allocated={}, capacity={}, free=v, fragmented=0.0)
        for i, v in enumerate(values)
    ]
    assert time_weighted_mean(samples, "free") == pytest.approx(expected)


def h100(name: str) -> dict[str, Any]:
    return make_node(
        name,
        labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
        allocatable={"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"},
    )


def test_sample_counts_allocation_free_and_fragmentation_against_the_observed_mix() -> None:
    pods = [make_pod("p1", node="n1", requests={"nvidia.com/gpu": "6", "cpu": "4"}),
            make_pod("p2", node="n2", requests={"nvidia.com/gpu": "8", "cpu": "4"})]
    inventory = build_inventory([h100("n1"), h100("n2"), h100("n3")], pods, catalog=CATALOG)
    histogram = WorkloadHistogram()
    for pod in pods:  # the observed mix: 8-GPU and 6-GPU pods; n1's 2 free GPUs fit neither
        node = inventory.node(pod["spec"]["nodeName"])
        assert node is not None
        observe_shape(histogram, node, parse_pod(pod))
    sample = sample_cluster(3.0, inventory, CATALOG, histogram)
    assert sample.allocated == {"nvidia-h100-80gb": 14.0} and sample.capacity == {"nvidia-h100-80gb": 24.0}
    assert sample.free == pytest.approx(10.0)
    assert sample.fragmented == pytest.approx(2.0)
    assert sample.fragmented_share == pytest.approx(0.2)
    assert sample_cluster(3.0, inventory, CATALOG, None).fragmented == 0.0


def test_pools_are_fragmented_only_for_pods_that_can_use_them() -> None:
    l4 = make_node("l4", labels={"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "4"},
                   allocatable={"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "4"})
    pods = [make_pod("big", node="n1", requests={"nvidia.com/gpu": "8", "cpu": "4"}),
            make_pod("small", node="l4", requests={"nvidia.com/gpu": "1", "cpu": "4"})]
    inventory = build_inventory([h100("n1"), h100("n2"), l4], pods, catalog=CATALOG)
    histogram = WorkloadHistogram()
    for pod in pods:
        node = inventory.node(pod["spec"]["nodeName"])
        assert node is not None
        observe_shape(histogram, node, parse_pod(pod))
    sample = sample_cluster(0.0, inventory, CATALOG, histogram)
    # n2's 8 free H100s fit the observed 8-GPU H100 pod; the L4's 3 free fit the 1-GPU L4 pod:
    # neither is fragmented, although neither fits the other type's pods.
    assert sample.free == pytest.approx(11.0)
    assert sample.fragmented == pytest.approx(0.0)


def test_never_started_groups_admitted_unplaced_pods_by_profile_and_reason() -> None:
    stuck = [
        PodOutcome(name=n, team="nlp", kind="notebook", profile="notebook-shared", admitted=True, waiting=why)
        for n, why in (("a", "taint"), ("b", "taint"), ("c", ""))
    ]
    assert never_started([*OUTCOMES[:4], *stuck, denied("x", "quota-exceeded")]) == {
        ("notebook-shared", "taint"): 2,
        ("notebook-shared", "never scheduled"): 1,
    }


def test_job_placements_count_leaves_of_jobs_with_two_or_more_running_pods() -> None:
    def member(name: str, job: str, leaf: str | None, node: str | None = "n") -> PodOutcome:
        return PodOutcome(
            name=name,
            team="nlp",
            kind="gang",
            profile="large-any",
            admitted=True,
            node=node,
            job=job,
            leaf=leaf,
        )

    jobs = job_placements([member("a0", "a", "s1/l1"), member("a1", "a", "s1/l1"),
                           member("b0", "b", "s1/l1"), member("b1", "b", "s2/l2"), member("b2", "b", None),
                           member("c0", "c", "s1/l1"), member("c1", "c", None, node=None)])
    assert [(j.job, j.pods, j.leaves, j.one_leaf) for j in jobs] == [
        ("a", 2, ("s1/l1",), True),
        ("b", 3, ("?", "s1/l1", "s2/l2"), False),
    ]
