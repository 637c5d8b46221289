"""The demo's kube-scheduler stand-in: taints, affinity, resource fit, seeded tie-break, cache."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from accel.capacity.inventory import build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.pods import parse_pod
from accel.policy.models import ParsedPolicy, Policy
from cli.demo_scheduler import (
    SchedulerCache,
    affinity_allows,
    feasible_nodes,
    select_host,
    tolerates,
    unschedulable_message,
)
from kube.fake import FakeCluster
from kube.informer import ClusterWatcher
from kube.testing import make_namespace, make_node, make_pod, until

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
CATALOG = load_builtin_catalog()


def gpu_node(
    name: str, *, product: str = "NVIDIA-H100-80GB-HBM3", gpus: int = 8, taint: bool = True, **spec: Any
) -> dict[str, Any]:
    node = make_node(
        name,
        labels={"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus), "zone": "a"},
        allocatable={"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": str(gpus)},
    )
    node["spec"] = {"taints": [GPU_TAINT]} if taint else {}
    node["spec"].update(spec)
    return node


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}, True),
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "other"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),
        ({"key": "nvidia.com/gpu.shared", "operator": "Exists"}, False),
    ],
    ids=["exists-same-effect", "exists-any-effect", "equal-value", "equal-wrong-value", "other-effect",
         "wildcard-exists", "other-key"],
)
def test_tolerations(toleration: dict[str, str], ok: bool) -> None:
    assert tolerates([toleration], GPU_TAINT) is ok


def _node_inv(node: dict[str, Any]) -> Any:
    return build_inventory([node], [], catalog=CATALOG).nodes[0]


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({}, True),
        ({"nodeSelector": {"zone": "a"}}, True),
        ({"nodeSelector": {"zone": "b"}}, False),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "nvidia.com/gpu.product",
                                            "operator": "In",
                                            "values": ["NVIDIA-H200"],
                                        }
                                    ]
                                },
                                {"matchExpressions": [{"key": "zone", "operator": "Exists"}]},
                            ]
                        }
                    }
                }
            },
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "zone", "operator": "Exists"},
                                        {"key": "nvidia.com/gpu.count", "operator": "Gt", "values": ["8"]},
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            False,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": ["n1"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}
                    }
                }
            },
            False,
        ),
    ],
    ids=[
        "no-constraint",
        "selector-match",
        "selector-mismatch",
        "terms-ored",
        "expressions-anded",
        "match-fields-name",
        "empty-term-matches-nothing",
    ],
)
def test_affinity(spec: dict[str, Any], ok: bool) -> None:
    assert affinity_allows(spec, _node_inv(gpu_node("n1"))) is ok


def test_feasible_nodes_applies_every_filter() -> None:
    nodes = [
        gpu_node("tainted"),
        gpu_node("open", taint=False),
        gpu_node("cordoned", taint=False, unschedulable=True),
        gpu_node("small", taint=False, gpus=2),
    ]
    busy = make_pod("busy", node="open", requests={"nvidia.com/gpu": "6"})
    inventory = build_inventory(nodes, [busy], catalog=CATALOG)
    pod = make_pod("p", requests={"nvidia.com/gpu": "2", "cpu": "1"})
    assert feasible_nodes(pod, parse_pod(pod), inventory) == ["open", "small"]
    pod["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert feasible_nodes(pod, parse_pod(pod), inventory) == ["open", "small", "tainted"]
    big = make_pod("big", requests={"nvidia.com/gpu": "4"})
    assert feasible_nodes(big, parse_pod(big), inventory) == []


def test_select_host_takes_the_best_and_breaks_ties_with_the_seed() -> None:
    assert select_host({"a": 3, "b": 9, "c": 1}, random.Random(1)) == "b"
    tied = {"a": 5, "b": 5, "c": 5, "d": 2}
    picks = [select_host(tied, random.Random(seed)) for seed in range(30)]
    assert set(picks) == {"a", "b", "c"}
    assert picks == [select_host(tied, random.Random(seed)) for seed in range(30)]
    with pytest.raises(ValueError, match="at least one"):
        select_host({}, random.Random(0))


def test_scheduler_cache_equals_build_inventory_after_changes() -> None:
    async def scenario() -> None:
        cluster = FakeCluster()
        for obj in (
            gpu_node("n1"),
            gpu_node("n2", product="NVIDIA-H200"),
            make_namespace("team-a", labels={"team": "a"}),
        ):
            cluster.apply(obj)
        parsed = ParsedPolicy(policy=Policy(), catalog=CATALOG)
        watcher = ClusterWatcher(cluster)
        task = asyncio.create_task(watcher.run())
        await watcher.wait_synced()
        cache = SchedulerCache(watcher, parsed)
        first = cache.inventory()
        cluster.apply(make_pod("p1", "team-a", node="n1", requests={"nvidia.com/gpu": "3"}))
        await until(lambda: watcher.pods.version > 0)
        second = cache.inventory()
        expected = build_inventory(
            watcher.nodes.items(),
            watcher.pods.items(),
            watcher.namespaces.items(),
            catalog=CATALOG,
            policy=parsed.policy,
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert first is not second and cache.inventory() is second  # rebuilt on change, memoised otherwise
        assert second.nodes == expected.nodes and second.pods == expected.pods
        assert second.node("n1") is not None and second.node("n1").allocated == {"nvidia.com/gpu": 3}  # type: ignore[union-attr]
        assert second.node("n2") is first.node("n2")  # untouched node not rebuilt

    asyncio.run(scenario())


def test_unschedulable_message_counts_nodes_per_first_failing_filter() -> None:
    nodes = [
        gpu_node("tainted"),
        gpu_node("full", taint=False, gpus=1),
        gpu_node("cordoned", taint=False, unschedulable=True),
    ]
    inventory = build_inventory(nodes, [], catalog=CATALOG)
    pod = make_pod("p", requests={"nvidia.com/gpu": "2"})
    assert unschedulable_message(pod, parse_pod(pod), inventory) == (
        "0/3 nodes are available: 1 node(s) had insufficient resources, "
        "1 node(s) had untolerated taint {nvidia.com/gpu: present}, 1 node(s) were unschedulable."
    )
