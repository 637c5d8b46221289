"""Per-device node model, the accel.dev/devices annotation, and assumed binds (accel.capacity.devices)."""

from __future__ import annotations

from typing import Any

import pytest

from accel.capacity.devices import (
    AssumedBinds,
    Assumption,
    DeviceError,
    NodeDevices,
    Pool,
    build_node_devices,
    format_assignment,
    parse_assignment,
)
from tests.builders import inventory, mig_node_object, named_gpu_pod, node_object, shared_node_object


@pytest.mark.parametrize(
    ("assignment", "text"),
    [
        pytest.param({"nvidia.com/gpu": (0, 1)}, "0,1", id="two-whole-gpus"),
        pytest.param({"nvidia.com/mig-1g.10gb": (3,)}, "mig-1g.10gb:3", id="one-mig-slice"),
        pytest.param({"nvidia.com/gpu.shared": (2, 2)}, "2,2", id="two-replicas-of-one-gpu"),
    ],
)
def test_annotation_round_trips(assignment: dict[str, tuple[int, ...]], text: str) -> None:
    assert format_assignment(assignment) == text
    requested = {r: len(d) for r, d in assignment.items()}
    assert parse_assignment(text, requested) == assignment


@pytest.mark.parametrize(
    ("text", "requested", "match"),
    [
        pytest.param("a,b", {"nvidia.com/gpu": 2}, "integers", id="not-integers"),
        pytest.param("0", {"nvidia.com/gpu": 2}, "requests 2", id="wrong-count"),
        pytest.param("0", {"nvidia.com/gpu": 1, "amd.com/gpu": 1}, "name the pool", id="ambiguous-pool"),
    ],
)
def test_bad_annotations_are_refused(text: str, requested: dict[str, int], match: str) -> None:
    with pytest.raises(DeviceError, match=match):
        parse_assignment(text, requested)


def _devices(node: dict[str, Any], pods: list[dict[str, Any]]) -> NodeDevices:
    inv = inventory([node], pods)
    return build_node_devices(inv.nodes[0], inv.pods)


def test_annotated_pods_first_then_lowest_fill() -> None:
    pods = [
        named_gpu_pod("a", 2, node="n1"),  # no annotation: filled after the annotated one
        named_gpu_pod("b", 2, node="n1", annotations={"accel.dev/devices": "0,1"}),
    ]
    pool = _devices(node_object("n1"), pods).pools["nvidia.com/gpu"]
    assert pool.used == (1, 1, 1, 1, 0, 0, 0, 0)


def test_annotation_that_does_not_fit_falls_back_to_fill() -> None:
    pods = [named_gpu_pod("a", 1, node="n1", annotations={"accel.dev/devices": "9"})]
    assert _devices(node_object("n1", gpus=2), pods).pools["nvidia.com/gpu"].used == (1, 0)


def test_time_sliced_node_has_replica_slots_per_gpu() -> None:
    pods = [named_gpu_pod("s", 1, profile="notebook-shared", resource="nvidia.com/gpu.shared", node="n1")]
    pool = _devices(shared_node_object("n1", gpus=2, replicas=4), pods).pools["nvidia.com/gpu.shared"]
    assert (pool.capacity, pool.used, pool.free_milli()) == ((4, 4), (1, 0), (750, 1000))


def test_mig_node_has_one_device_per_slice() -> None:
    pods = [
        named_gpu_pod(
            "m",
            1,
            profile="inference-mig",
            resource="nvidia.com/mig-1g.10gb",
            node="n1",
            annotations={"accel.dev/devices": "mig-1g.10gb:5"},
        )
    ]
    pool = _devices(mig_node_object("n1", slices=7), pods).pools["nvidia.com/mig-1g.10gb"]
    assert pool.used == (0, 0, 0, 0, 0, 1, 0)


def test_overcommitted_node_stays_full_not_negative() -> None:
    pods = [named_gpu_pod("a", 2, node="n1"), named_gpu_pod("b", 2, node="n1")]
    pool = _devices(node_object("n1", gpus=3), pods).pools["nvidia.com/gpu"]
    assert pool.free_units == 0


def test_take_refuses_a_full_device() -> None:
    with pytest.raises(DeviceError, match="no free unit"):
        Pool("nvidia.com/gpu", (1,), (1,)).take([0])


def test_assumptions_expire_and_drop_when_bound() -> None:
    binds = AssumedBinds()
    binds.assume(Assumption("u1", "ns/a", "n1", {"nvidia.com/gpu": (0,)}, expires_at=10.0))
    binds.assume(Assumption("u2", "ns/b", "n1", {"nvidia.com/gpu": (1,)}, expires_at=100.0))
    binds.assume(Assumption("u3", "ns/c", "n2", {"nvidia.com/gpu": (0,)}, expires_at=100.0))
    binds.prune(now=10.0, bound_uids={"u3"})
    assert list(binds.by_uid) == ["u2"]
    assert binds.nodes() == {"n1"}
