"""The inventory memo redoes only what changed, and never serves a stale node."""

from __future__ import annotations

import copy
from typing import Any

from accel.capacity.inventory import ParseCache, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from kube.testing import make_node, make_pod


def versioned(obj: dict[str, Any], version: str) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = version
    return obj


def nodes() -> list[dict[str, Any]]:
    return [
        versioned(
            make_node(
                f"gpu-{i}",
                labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                allocatable={"nvidia.com/gpu": "8"},
            ),
            "1",
        )
        for i in range(3)
    ]


def bound_pod(name: str, node: str, gpus: str, version: str = "1") -> dict[str, Any]:
    pod = make_pod(name, "team-a", node=node, requests={"nvidia.com/gpu": gpus}, uid=f"uid-{name}")
    pod["status"]["phase"] = "Running"
    return versioned(pod, version)


def test_unchanged_nodes_are_reused_and_pod_changes_recount_allocation() -> None:
    catalog, cache = load_builtin_catalog(), ParseCache()
    objs = nodes()
    first = build_inventory(objs, [bound_pod("a", "gpu-0", "2")], catalog=catalog, cache=cache)
    second = build_inventory(
        objs, [bound_pod("a", "gpu-0", "2"), bound_pod("b", "gpu-1", "3")], catalog=catalog, cache=cache
    )
    assert second.node("gpu-0") is first.node("gpu-0")  # same object: nothing about it changed
    assert second.node("gpu-2") is first.node("gpu-2")
    assert second.node("gpu-1").allocated == {"nvidia.com/gpu": 3}
    assert second.node("gpu-1").accelerators is first.node("gpu-1").accelerators  # labels not re-normalised


def test_a_new_node_version_or_catalog_is_rebuilt() -> None:
    catalog, cache = load_builtin_catalog(), ParseCache()
    objs = nodes()
    first = build_inventory(objs, [], catalog=catalog, cache=cache)
    relabelled = copy.deepcopy(objs)
    relabelled[0]["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-H100-80GB-HBM3"
    versioned(relabelled[0], "2")
    second = build_inventory(relabelled, [], catalog=catalog, cache=cache)
    assert second.node("gpu-0").accelerator_type == "nvidia-h100-80gb"
    other = parse_policy(
        {"accelerators.yaml": "accelerators: [{name: nvidia-a100-80gb, displayName: A100 renamed}]\n"},
        catalog,
    ).catalog
    third = build_inventory(relabelled, [], catalog=other, cache=cache)
    assert third.node("gpu-1") is not first.node("gpu-1")


def test_memo_matches_a_fresh_build() -> None:
    catalog, cache = load_builtin_catalog(), ParseCache()
    objs = nodes()
    pods = [bound_pod("a", "gpu-0", "2"), bound_pod("b", "gpu-0", "1")]
    build_inventory(objs, pods[:1], catalog=catalog, cache=cache)
    cached = build_inventory(objs, pods, catalog=catalog, cache=cache)
    fresh = build_inventory(objs, pods, catalog=catalog)
    assert cached.model_dump() == fresh.model_dump()
