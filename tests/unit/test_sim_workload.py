"""Per-seed workload formation: shuffle, tune to 1.3 x capacity, node priority."""

from __future__ import annotations

from collections import Counter

import pytest

from accel.placement.shapes import PodShape
from accel.sim.trace import TracePod
from accel.sim.workload import build_run_input, fgd_key


def _pods(n: int, milli: int = 1000, count: int = 1) -> list[TracePod]:
    return [TracePod(f"p{i:03d}", PodShape(1000, milli, count)) for i in range(n)]


def _total(run_input: object) -> int:
    ri = run_input
    return sum(ri.pods[i].shape.total_gpu_milli for i in ri.arrivals)  # type: ignore[attr-defined]


def test_tune_up_keeps_a_full_permutation_then_appends_resamples() -> None:
    pods = _pods(50)  # 50 GPUs of demand on a 50-GPU cluster: target 65 GPUs
    ri = build_run_input(pods, total_gpus=50, node_count=5, seed=42)
    assert sorted(ri.arrivals[:50]) == list(range(50))
    assert 65_000 - 1000 < _total(ri) <= 65_000
    assert len(ri.arrivals) == 65


def test_tune_up_checks_per_gpu_milli_so_multi_gpu_pods_may_overshoot() -> None:
    pods = _pods(10, milli=1000, count=8)  # 80 GPUs asked, 100-GPU cluster: target 130
    ri = build_run_input(pods, total_gpus=100, node_count=4, seed=7)
    assert 130_000 < _total(ri) <= 130_000 + 7000


def test_tune_down_removes_random_pods_until_at_or_below_target() -> None:
    pods = _pods(200)
    ri = build_run_input(pods, total_gpus=100, node_count=4, seed=3)
    assert _total(ri) <= 130_000 and len(ri.arrivals) == 130
    assert len(set(ri.arrivals)) == 130  # a random subset, no duplicates


def test_same_seed_same_sequence_different_seed_different_order() -> None:
    pods = _pods(40)
    a = build_run_input(pods, total_gpus=40, node_count=8, seed=42)
    b = build_run_input(pods, total_gpus=40, node_count=8, seed=42)
    c = build_run_input(pods, total_gpus=40, node_count=8, seed=43)
    assert a == b
    assert a.arrivals != c.arrivals
    assert sorted(a.node_priority) == list(range(8))


def test_pods_are_indexed_in_name_order_regardless_of_file_order() -> None:
    pods = list(reversed(_pods(5)))
    ri = build_run_input(pods, total_gpus=100, node_count=1, seed=1)
    assert [p.name for p in ri.pods] == sorted(p.name for p in pods)
    assert Counter(ri.arrivals[:5]) == Counter(range(5))


def test_fgd_key_drops_memory_and_counts_zero_cpu_as_100m() -> None:
    shape = PodShape(0, 500, 1, frozenset({"A"}), memory_mib=4096)
    assert fgd_key(shape) == PodShape(100, 500, 1, frozenset({"A"}))


def test_node_priority_is_drawn_over_name_order_not_file_order() -> None:
    pods = _pods(20)
    names = ["n3", "n1", "n2", "n0"]  # file order != name order
    by_index = build_run_input(pods, total_gpus=40, node_count=4, seed=9)
    by_name = build_run_input(pods, total_gpus=40, node_count=4, seed=9, node_names=names)
    # the i-th node by name gets the i-th drawn rank, wherever it sits in the file
    assert [by_name.node_priority[names.index(f"n{i}")] for i in range(4)] == list(by_index.node_priority)
    with pytest.raises(ValueError, match="3 node names for 4 nodes"):
        build_run_input(pods, total_gpus=40, node_count=4, seed=9, node_names=names[:3])


def test_placement_source_starts_fresh_each_time_after_the_workload_draws() -> None:
    ri = build_run_input(_pods(20), total_gpus=40, node_count=4, seed=9)
    first, second = ri.placement_source(), ri.placement_source()
    assert [first.intn(1000) for _ in range(5)] == [second.intn(1000) for _ in range(5)]
