"""Hindsight reference: offline packers, local search and the Lagrangian bound on small instances
whose optimum is known (by construction or by brute force)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.placement.shapes import NodeShape, PodShape, pod_fits
from accel.sim.hindsight import (
    Packing,
    _best_fill,
    arrival_prefix,
    device_bundles,
    greedy_pack,
    local_search,
    pack_in_hindsight,
    pattern_pack,
    window_weights,
)
from accel.sim.hindsight_bound import gpu_upper_bound
from cli.sim_hindsight import HINDSIGHT, HINDSIGHT_NAMES, hindsight_ratios, render_gap_table
from cli.sim_matrix import make_tasks, run_matrix
from tests.unit.test_sim_trace import write_synthetic_trace

BIG_CPU = 64_000
BIG_MEM = 1 << 20


def _node(gpus: int, model: str = "A", cpu: int = BIG_CPU, mem: int = BIG_MEM) -> NodeShape:
    return NodeShape(model, (1000,) * gpus, cpu, mem)


def _pod(milli: int, count: int = 1, cpu: int = 1000, types: frozenset[str] = frozenset(),
         mem: int = 0) -> PodShape:
    return PodShape(cpu, milli, count, types, mem)


def _placed_milli(packing: Packing) -> int:
    return packing.placed_milli()


def _check_feasible(nodes: list[NodeShape], pods: list[PodShape], node_of: Sequence[int],
                    devices_of: Sequence[tuple[int, ...]] | None = None) -> None:
    """Replay the assignment from empty nodes in arrival order with the online filter (and the
    packing's own devices when given): every placed pod must fit when it arrives."""
    packing = Packing(nodes, pods, range(len(nodes)))
    for i, n in enumerate(node_of):
        if n >= 0:
            assert pod_fits(packing.node_shape(n), pods[i]), f"pod {i} does not fit node {n}"
            packing.place(i, n, devices_of[i] if devices_of is not None else ())


# 2 GPUs; arrivals 810, 810, then four 470s. Greedy-decreasing puts the 810s first and strands two
# 190-milli slivers; the optimum is two 470+470 devices (1880 milli).
SLIVER_NODES = [_node(1), _node(1)]
SLIVER_PODS = [_pod(810), _pod(810), _pod(470), _pod(470), _pod(470), _pod(470)]


def test_greedy_strands_slivers_and_local_search_finds_the_optimum() -> None:
    ffd = greedy_pack(SLIVER_NODES, SLIVER_PODS, [0, 1], best=False)
    assert _placed_milli(ffd) == 1620
    value = np.array([p.total_gpu_milli for p in SLIVER_PODS], dtype=float)
    steps = local_search(ffd, value, steps=1000)
    assert 0 < steps <= 1000
    assert _placed_milli(ffd) == 1880
    _check_feasible(SLIVER_NODES, SLIVER_PODS, ffd.node_of, ffd.devices_of)


def test_pattern_packing_pairs_the_470s_at_once() -> None:
    assert sorted(_best_fill([810, 470], {810: 2, 470: 4})) == [470, 470]
    assert sorted(_best_fill([810, 470, 190], {810: 1, 470: 2, 190: 1})) == [190, 810]
    bundles = device_bundles(SLIVER_PODS, range(len(SLIVER_PODS)))
    fills = [sorted(SLIVER_PODS[i].gpu_milli for i in b) for b in bundles]
    assert fills == [[470, 470], [470, 470], [810], [810]]  # best fills first
    packing = pattern_pack(SLIVER_NODES, SLIVER_PODS, [0, 1])
    assert _placed_milli(packing) == 1880
    _check_feasible(SLIVER_NODES, SLIVER_PODS, packing.node_of, packing.devices_of)


def test_bound_is_exact_on_the_sliver_instance() -> None:
    result = gpu_upper_bound(SLIVER_NODES, SLIVER_PODS, target_milli=1880)
    assert result.upper_bound_milli == pytest.approx(1880)
    assert result.per_event[-1] == 1880
    # each event is capped by what had arrived: 810, 1620, then the bound for the prefix
    assert list(result.per_event[:2]) == [810, 1620]


def test_cpu_decides_which_pods_fit() -> None:
    # One node, 2 GPUs but 8 cores: two 6-core whole-GPU pods cannot both fit; a 2-core one can.
    nodes = [NodeShape("A", (1000, 1000), 8000, BIG_MEM)]
    pods = [_pod(1000, cpu=6000), _pod(1000, cpu=6000), _pod(1000, cpu=2000)]
    packing = greedy_pack(nodes, pods, [0], best=True)
    local_search(packing, np.array([1000.0] * 3), steps=100)
    assert _placed_milli(packing) == 2000
    _check_feasible(nodes, pods, packing.node_of, packing.devices_of)
    bound = gpu_upper_bound(nodes, pods, target_milli=2000)
    assert 2000 <= bound.per_event[-1] <= 2000  # the device count caps it here


def test_gpu_model_constraints_are_kept() -> None:
    nodes = [_node(1, "A"), _node(1, "B")]
    only_b = frozenset({"B"})
    pods = [_pod(1000, types=only_b), _pod(1000, types=only_b), _pod(1000)]
    for best in (False, True):
        packing = greedy_pack(nodes, pods, [0, 1], best=best)
        assert packing.node_of[0] == 1 or packing.node_of[1] == 1
        assert all(packing.node_of[i] != 0 for i in (0, 1))
        assert _placed_milli(packing) == 2000
    bound = gpu_upper_bound(nodes, pods, target_milli=2000)
    assert bound.per_event[-1] == 2000
    # without the unconstrained pod only one B pod can be allocated: the bound must see that
    assert gpu_upper_bound(nodes, pods[:2], target_milli=1000).upper_bound_milli == pytest.approx(1000)


def test_multi_gpu_pods_need_whole_devices_on_one_node() -> None:
    nodes = [_node(2), _node(2)]
    pods = [_pod(500), _pod(500), _pod(1000, count=2), _pod(1000, count=2)]
    packing = greedy_pack(nodes, pods, [0, 1], best=True)
    local_search(packing, np.array([p.total_gpu_milli for p in pods], dtype=float), steps=100)
    assert _placed_milli(packing) == 4000
    _check_feasible(nodes, pods, packing.node_of, packing.devices_of)
    assert gpu_upper_bound(nodes, pods, target_milli=4000).per_event[-1] == 4000


def test_local_search_stops_when_told() -> None:
    packing = greedy_pack(SLIVER_NODES, SLIVER_PODS, [0, 1], best=False)
    value = np.array([p.total_gpu_milli for p in SLIVER_PODS], dtype=float)
    assert local_search(packing, value, steps=1000, stop=lambda: True) == 0
    assert _placed_milli(packing) == 1620


def test_undo_restores_the_state_exactly() -> None:
    nodes = [_node(2), _node(1)]
    pods = [_pod(300), _pod(600), _pod(1000)]
    packing = Packing(nodes, pods, [0, 1])
    packing.place(0, 0)
    before = (packing.free.copy(), packing.cpu.copy(), list(packing.node_of))
    mark = len(packing.log)
    packing.place(1, 0)
    packing.remove(0)
    packing.place(2, 0)
    packing.undo_to(mark)
    np.testing.assert_array_equal(packing.free, before[0])
    np.testing.assert_array_equal(packing.cpu, before[1])
    assert packing.node_of == before[2]


def test_prefix_and_window_weights_follow_the_runner_rounding() -> None:
    pods = [_pod(1000)] * 5  # 5 GPUs arriving on a 4-GPU cluster: 25 % each
    assert arrival_prefix(pods, 4) == 4  # 100 % after the fourth; the fifth is column 125
    weights = window_weights(pods[:4], 4)
    assert list(weights) == [1.0, 1.0, 1.0, 1.0]  # one event in the window, the last one


def _best_brute_force(nodes: list[NodeShape], pods: list[PodShape]) -> int:
    """Every placement the packers can make: each pod rejected, or on any node and any set of its
    devices with room (not only the simulator's device rule, which a packer may undo by placing in
    another order); the most GPU milli among the feasible ones."""
    packing = Packing(nodes, pods, range(len(nodes)))

    def best_from(i: int) -> int:
        if i == len(pods):
            return packing.placed_milli()
        best = best_from(i + 1)  # pod i rejected
        pod = pods[i]
        for n, node in enumerate(nodes):
            if not pod_fits(packing.node_shape(n), pod):
                continue
            devices_of_node = range(len(node.free_milli))
            choices = itertools.combinations(devices_of_node, pod.gpu_count) if pod.gpu_milli else [()]
            for devices in choices:
                free = packing.node_shape(n).free_milli
                if any(free[d] < pod.gpu_milli for d in devices):
                    continue
                mark = len(packing.log)
                packing.place(i, n, devices)
                best = max(best, best_from(i + 1))
                packing.undo_to(mark)
        return best

    return best_from(0)


pod_strategy = st.builds(
    _pod,
    milli=st.sampled_from([100, 250, 300, 470, 500, 650, 810, 1000]),
    count=st.sampled_from([1, 1, 1, 2]),
    cpu=st.sampled_from([0, 2000, 4000, 6000]),
    types=st.sampled_from([frozenset(), frozenset({"A"}), frozenset({"B"})]),
    mem=st.sampled_from([0, 1000, 3000]),
).map(lambda p: p if p.gpu_count == 1 or p.gpu_milli == 1000 else PodShape(p.cpu_milli, 1000, p.gpu_count,
                                                                               p.gpu_types, p.memory_mib))
node_strategy = st.builds(
    NodeShape,
    gpu_type=st.sampled_from(["A", "B"]),
    free_milli=st.sampled_from([(1000,), (1000, 1000)]),
    cpu_left_milli=st.sampled_from([4000, 8000, 12000]),
    memory_left_mib=st.sampled_from([2000, 4000, 8000]),
)


@settings(max_examples=40, deadline=None)
@given(nodes=st.lists(node_strategy, min_size=1, max_size=2),
       pods=st.lists(pod_strategy, min_size=1, max_size=5))
def test_bound_is_never_below_any_packing(nodes: list[NodeShape], pods: list[PodShape]) -> None:
    optimum = _best_brute_force(nodes, pods)
    total_gpus = sum(len(n.free_milli) for n in nodes)
    results = pack_in_hindsight(nodes, pods, list(range(len(nodes))), total_gpus, steps=200)
    bound = gpu_upper_bound(nodes, pods, target_milli=optimum, iterations=30)
    assert bound.per_event[-1] >= optimum
    for r in results:
        _check_feasible(nodes, pods, r.node_of, r.devices_of)
        placed = sum(p.total_gpu_milli for p, n in zip(pods, r.node_of, strict=True) if n >= 0)
        assert placed <= optimum  # the brute force covers every placement the packers can make
        assert bound.per_event[-1] >= placed
    # per-event bounds hold for every prefix too
    for e in range(len(pods)):
        assert bound.per_event[e] >= _best_brute_force(nodes, pods[: e + 1])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_trace(tmp_path_factory.mktemp("trace"), pods=400, demand=0.95)


def test_hindsight_records_bound_every_online_policy(synthetic: Path) -> None:
    tasks = make_tasks(synthetic, ["default"], ["fgd", "accel", "bestfit", HINDSIGHT], seeds=2,
                       hindsight_steps=2000)
    records = run_matrix(tasks)
    by_seed: dict[int, dict[str, float]] = {}
    for rec in records:
        by_seed.setdefault(rec.result.seed, {})[rec.result.policy] = rec.result.unallocated_gpu_pct
    for seed, results in by_seed.items():
        assert set(HINDSIGHT_NAMES) <= set(results), seed
        for policy, unallocated in results.items():
            assert results["bound"] <= unallocated + 1e-9, (seed, policy)
        assert results["hindsight-ls"] <= min(results["hindsight-ffd"], results["hindsight-bfd"]) + 1e-9


def test_gap_table_and_bench_lines_show_accel_against_the_references() -> None:
    summary = {("default", "accel"): (4.0, 0.1, 10), ("default", "fgd"): (5.0, 0.1, 10),
               ("default", "hindsight-ls"): (3.2, 0.1, 10), ("default", "bound"): (2.5, 0.0, 10)}
    table = render_gap_table(summary, ["default"])
    row = table.splitlines()[-1]
    assert row.startswith(
        "| default | 4.00 | 5.00 | - | - | - | - | 3.20 | 2.50 | +1.50 | 1.25 | +2.50 | 10 |")
    lines = hindsight_ratios(summary, "default")
    assert lines[0].startswith(
        "accel/hindsight-ls unallocated ratio default: 1.250 (4.00 vs 3.20); accel - bound: +1.50")
    assert "fgd - bound: +2.50" in lines[1]
