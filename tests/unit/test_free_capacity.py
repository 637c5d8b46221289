"""One source of free capacity (accel.capacity.free): the totals and the device model never disagree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.capacity.devices import build_node_devices
from accel.capacity.free import free_units_by_type, node_free_units
from tests.builders import (
    inventory,
    mig_node_object,
    named_gpu_pod,
    node_object,
    shared_example_policy,
    shared_node_object,
)

NODES = {
    "whole": (node_object("n1", gpus=8), "nvidia.com/gpu"),
    "shared": (shared_node_object("n1", gpus=2, replicas=4), "nvidia.com/gpu.shared"),
    "mig": (mig_node_object("n1", slices=7), "nvidia.com/mig-1g.10gb"),
}


@st.composite
def node_with_pods(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    node, resource = NODES[draw(st.sampled_from(sorted(NODES)))]
    sizes = draw(st.lists(st.integers(min_value=1, max_value=4), max_size=6))
    pods = []
    for i, size in enumerate(sizes):
        # Some pods carry a device assignment (valid, out of range or garbage), most do not.
        note = draw(
            st.sampled_from(
                [None, None, ",".join(str(d) for d in range(size)), "9,9,9,9"[: 2 * size - 1], "x"]
            )
        )
        annotations = {"accel.dev/devices": note} if note else None
        pods.append(
            named_gpu_pod(f"p{i}", size, node="n1", resource=resource, annotations=annotations, profile=None)
        )
    return node, pods


@settings(max_examples=150, deadline=None)
@given(node_with_pods())
def test_device_model_agrees_with_the_totals(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    node_obj, pods = case
    inv = inventory([node_obj], pods)
    node = inv.nodes[0]
    devices = build_node_devices(node, inv.pods)
    assert node_free_units(node, devices) == node_free_units(node)


def test_free_units_count_requests_and_never_go_negative() -> None:
    inv = inventory(
        [node_object("n1", gpus=8)], [named_gpu_pod("a", 3, node="n1"), named_gpu_pod("b", 9, node="n1")]
    )
    assert node_free_units(inv.nodes[0]) == {"nvidia.com/gpu": 0}
    inv = inventory(
        [node_object("n1", gpus=8)], [named_gpu_pod("a", 3, node="n1"), named_gpu_pod("pending", 2)]
    )
    assert node_free_units(inv.nodes[0]) == {"nvidia.com/gpu": 5}  # a pending pod holds no device


def test_free_units_by_type_skip_unschedulable_nodes_and_honour_device_models() -> None:
    nodes = [
        node_object("a", gpus=8),
        node_object("b", gpus=4),
        node_object("down", gpus=8, ready=False),
        node_object("cordoned", gpus=8, cordoned=True),
        node_object("h", "nvidia-h100-80gb", gpus=8),
    ]
    inv = inventory(nodes, [named_gpu_pod("x", 2, node="a")])
    catalog = shared_example_policy().catalog
    assert free_units_by_type(inv, catalog) == {"nvidia-a100-80gb": 10, "nvidia-h100-80gb": 8}
    # The extender's model of node b holds an assumed 3-GPU bind the watch does not show yet.
    node_b = inv.node("b")
    assert node_b is not None
    assumed = build_node_devices(node_b, ()).with_assignment({"nvidia.com/gpu": (0, 1, 2)})
    assert free_units_by_type(inv, catalog, {"b": assumed}) == {"nvidia-a100-80gb": 7, "nvidia-h100-80gb": 8}
