"""Baseline score formulas, tie-breaking, metrics and whole replays on a synthetic trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accel.placement.shapes import NodeShape, PodShape
from accel.sim.cluster import TAG_SHARE, ClusterState, NodeState, pod_tag, whole_gpu_tag
from accel.sim.policies import (
    POLICY_NAMES,
    AccelPolicy,
    BestFitPolicy,
    ClusteringPolicy,
    DotProdPolicy,
    PackingPolicy,
    best_devices,
    make_policy,
)
from accel.sim.runner import _Candidates, _pick, _pick_incremental, allocation_curve, run
from accel.sim.workload import build_run_input
from cli.sim_matrix import make_tasks, run_matrix
from cli.sim_trace import NODE_FILE, load_nodes, load_pods, pod_file
from tests.unit.test_sim_trace import write_synthetic_trace

SHARE = PodShape(2000, 300, 1)
WHOLE1 = PodShape(2000, 1000, 1)
WHOLE2 = PodShape(2000, 1000, 2)
CPU = PodShape(2000, 0, 0)
W1, W2 = whole_gpu_tag(1), whole_gpu_tag(2)


def _state(free: tuple[int, ...], tags: int = 0, cpu: int = 64000) -> NodeState:
    return NodeState(NodeShape("A", free, cpu, 1 << 20), tags)


@pytest.mark.parametrize(
    ("free", "pod", "expected"),
    [
        pytest.param((1000,) * 8, WHOLE1, 25, id="all-free-8gpu-node-gets-33-minus-8"),
        pytest.param((1000,) * 2, WHOLE1, 31, id="all-free-2gpu-node-gets-33-minus-2"),
        pytest.param((500, 1000, 1000), WHOLE2, 48, id="used-node-two-free-gpus-needed"),
        pytest.param((400, 700, 1000), SHARE, 96, id="shared-gpu-tightest-fit-400-left"),
        pytest.param((900, 1000), SHARE, 91, id="shared-gpu-900-left"),
        pytest.param((1000, 500), CPU, 0, id="cpu-only-pod-scores-zero"),
    ],
)
def test_packing_score(free: tuple[int, ...], pod: PodShape, expected: int) -> None:
    assert PackingPolicy().score(_state(free), pod)[0] == expected


@pytest.mark.parametrize(
    ("tags", "free", "pod", "expected"),
    [
        pytest.param(TAG_SHARE, (500, 1000), SHARE, 20 + 75, id="same-tag-only"),
        pytest.param(TAG_SHARE | W1, (500, 1000), SHARE, 20 + 50, id="mixed-tags-incl-pod"),
        pytest.param(0, (1000, 1000), SHARE, 18 + 25, id="idle-node"),
        pytest.param(W1, (0, 1000), SHARE, 21, id="only-other-tag"),
        pytest.param(TAG_SHARE, (500, 1000), CPU, 0, id="cpu-pod-zero"),
        # whole-GPU pods are tagged per GPU count ("1-gpu" != "2-gpu"), as in the FGD simulator
        pytest.param(
            W1, (0, 1000, 1000, 1000), WHOLE2, 25 * 5000 // 8000, id="1-gpu-node-is-other-tag-for-2-gpu-pod"
        ),
        pytest.param(
            W2, (0, 0, 1000, 1000), WHOLE2, 25 * 6000 // 8000 + 75, id="2-gpu-node-same-tag-for-2-gpu-pod"
        ),
        pytest.param(
            W1 | W2, (0, 0, 0, 1000, 1000), WHOLE2, 25 * 6000 // 8000 + 50, id="1-and-2-gpu-node-mixed"
        ),
        pytest.param(W2, (0, 0, 1000), WHOLE1, 25 * 7000 // 8000, id="2-gpu-node-is-other-tag-for-1-gpu-pod"),
    ],
)
def test_clustering_score(tags: int, free: tuple[int, ...], pod: PodShape, expected: int) -> None:
    assert ClusteringPolicy().score(_state(free, tags), pod)[0] == expected


@pytest.mark.parametrize(
    ("pod", "tag"),
    [
        pytest.param(CPU, 0, id="cpu-only-no-tag"),
        pytest.param(SHARE, TAG_SHARE, id="share-gpu"),
        pytest.param(WHOLE1, W1, id="1-gpu"),
        pytest.param(WHOLE2, W2, id="2-gpu"),
        pytest.param(PodShape(2000, 1000, 8), whole_gpu_tag(8), id="8-gpu"),
    ],
)
def test_pod_tags_are_distinct_per_gpu_count(pod: PodShape, tag: int) -> None:
    assert pod_tag(pod) == tag


def test_placing_pods_accumulates_one_tag_per_gpu_count() -> None:
    cluster = ClusterState([NodeShape("A", (1000,) * 4, 64000, 1 << 20)], (0,))
    cluster.place(0, WHOLE1, (0,))
    cluster.place(0, WHOLE2, (1, 2))
    cluster.place(0, CPU, ())
    assert cluster.states[0].tags == W1 | W2
    assert ClusteringPolicy().score(cluster.states[0], WHOLE1)[0] == 25 * 7000 // 8000 + 50


def test_whole_gpu_tag_rejects_zero_gpus() -> None:
    with pytest.raises(ValueError, match="gpu_count >= 1"):
        whole_gpu_tag(0)


def test_dotprod_prefers_the_emptier_node_for_the_same_pod() -> None:
    dp = DotProdPolicy()
    assert dp.score(_state((1000,), cpu=8000), WHOLE1)[0] > dp.score(_state((1000,) * 8), WHOLE1)[0]


def test_bestfit_raw_score_and_normalisation_flag() -> None:
    raw, devices = BestFitPolicy().score(_state((1000, 1000), cpu=64000), WHOLE1)
    assert raw == int(100 * (1 - (0.5 * 62000 / 128000 + 0.5 * 1000 / 8000)))
    assert devices == (0,) and BestFitPolicy.normalise


@pytest.mark.parametrize(
    ("free", "pod", "devices"),
    [
        pytest.param((1000, 400, 700), SHARE, (1,), id="shared-tightest-device"),
        pytest.param((400, 400), SHARE, (0,), id="shared-lowest-index-on-ties"),
        pytest.param((300, 1000, 1000, 1000), WHOLE2, (1, 2), id="whole-lowest-free"),
        pytest.param((1000,), CPU, (), id="cpu-only-no-device"),
    ],
)
def test_best_device_selection(free: tuple[int, ...], pod: PodShape, devices: tuple[int, ...]) -> None:
    assert best_devices(NodeShape("A", free, 1000), pod) == devices


def test_allocation_curve_window_average_and_fallback() -> None:
    # 10 GPUs: 1000 milli arrived = 10 %. Two events at 10 %, none at 20 % (falls back to 19..21).
    arrived = np.array([1000, 1000, 2100, 3000])
    used = np.array([1000, 500, 2100, 2000])
    curve = allocation_curve(arrived, used, total_gpus=10)
    assert curve[10] == pytest.approx(7.5)
    assert curve[21] == pytest.approx(21.0)
    assert curve[20] == pytest.approx(21.0)
    assert curve[30] == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("priority", "winner"),
    [
        pytest.param((2, 0, 1), 1, id="rank-0-is-node-1"),
        pytest.param((0, 1, 2), 0, id="rank-0-is-node-0"),
        pytest.param((1, 2, 0), 2, id="rank-0-is-node-2"),
    ],
)
def test_ties_go_to_the_highest_priority_node(priority: tuple[int, ...], winner: int) -> None:
    cluster = ClusterState([NodeShape("A", (1000,), 8000, 1000)] * 3, priority)
    choice = _pick(cluster, make_policy("packing", []), WHOLE1, {}, {})
    assert choice == (winner, (0,))


def test_higher_score_beats_priority() -> None:
    shapes = [NodeShape("A", (1000, 1000), 8000, 1000), NodeShape("A", (1000, 400), 8000, 1000)]
    cluster = ClusterState(shapes, (0, 1))
    assert _pick(cluster, make_policy("packing", []), SHARE, {}, {}) == (1, (1,))


def test_place_rejects_an_overfull_device() -> None:
    cluster = ClusterState([NodeShape("A", (200,), 8000, 100)], (0,))
    with pytest.raises(ValueError, match="device 0"):
        cluster.place(0, SHARE, (0,))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_trace(tmp_path_factory.mktemp("trace"), pods=1200, demand=0.95)


def test_every_policy_replays_the_synthetic_trace(synthetic: Path) -> None:
    records = run_matrix(make_tasks(synthetic, ["default"], POLICY_NAMES, seeds=2))
    assert {r.result.policy for r in records} == set(POLICY_NAMES)
    for rec in records:
        curve = np.array(rec.result.allocation_curve[:101])
        assert not np.isnan(curve).any()
        assert 0.0 <= rec.result.unallocated_gpu_pct <= 100.0
        assert np.all(curve <= np.arange(101) + 1.5)  # never more allocated than arrived (+ window)
        assert rec.result.pods > 1200 * 0.95


def test_replay_is_deterministic_and_conserves_gpu_milli(synthetic: Path) -> None:
    pods = load_pods(pod_file(synthetic, "default"))
    nodes = load_nodes(synthetic / NODE_FILE)
    ri = build_run_input(pods, total_gpus=140, node_count=len(nodes), seed=5)
    results = [run(nodes, ri, make_policy("fgd", [p.shape for p in pods]), seed=5) for _ in range(2)]
    np.testing.assert_array_equal(results[0].allocation_curve, results[1].allocation_curve)
    assert results[0].failed > 0  # 130 % of capacity arrives: something must fail


def test_process_pool_gives_the_same_records_as_in_process(synthetic: Path) -> None:
    tasks = make_tasks(synthetic, ["default"], ["bestfit", "random"], seeds=2)
    serial = [r.result.allocation_curve for r in run_matrix(tasks, jobs=1)]
    pooled = [r.result.allocation_curve for r in run_matrix(tasks, jobs=2)]
    np.testing.assert_array_equal(serial, pooled)


def test_fragmentation_aware_policies_beat_random_on_the_synthetic_trace(synthetic: Path) -> None:
    records = run_matrix(make_tasks(synthetic, ["default"], ["random", "fgd", "accel"], seeds=3))
    mean = {p: np.mean([r.result.unallocated_gpu_pct for r in records if r.result.policy == p])
            for p in ("random", "fgd", "accel")}
    assert mean["fgd"] < mean["random"] and mean["accel"] < mean["random"]


@pytest.mark.parametrize("policy_name", ["fgd", "accel", "packing", "clustering", "dotprod"])
def test_incremental_pick_matches_the_full_scan_every_step(synthetic: Path, policy_name: str) -> None:
    pods = load_pods(pod_file(synthetic, "default"))
    nodes = load_nodes(synthetic / NODE_FILE)
    ri = build_run_input(pods, total_gpus=140, node_count=len(nodes), seed=3)
    policy = make_policy(policy_name, [p.shape for p in pods])
    cluster = ClusterState([n.shape for n in nodes], ri.node_priority)
    cands: dict[PodShape, tuple[dict[int, bool], dict[int, tuple[float, tuple[int, ...]]], _Candidates]] = {}
    placed = 0
    for idx in ri.arrivals:
        pod = ri.pods[idx].shape
        policy.observe(pod)
        full = _pick(cluster, policy, pod, {}, {})
        version, cache = policy.version, cands.setdefault(pod, ({}, {}, _Candidates()))
        if cache[2].version != version:
            cache[1].clear()  # the runner drops scores when the policy's mix changes
        fast = _pick_incremental(cluster, policy, pod, *cache)
        assert fast == full
        if full is not None:
            cluster.place(full[0], pod, full[1])
            placed += 1
    assert 0 < placed < len(ri.arrivals)  # the trace fills the cluster and then overflows it


def test_accel_refreshes_its_learned_mix_geometrically_then_every_refresh_every() -> None:
    policy = AccelPolicy(refresh_every=4)
    refreshed_at = []
    for seen in range(1, 21):
        before = policy.version
        policy.observe(SHARE if seen % 2 else WHOLE1)
        if policy.version != before:
            refreshed_at.append(seen)
    assert refreshed_at == [1, 2, 4, 8, 12, 16, 20]
    assert {shape for shape, _ in policy.mix.typical} == {SHARE, WHOLE1}


def test_make_policy_gives_accel_the_cluster_inventory_only() -> None:
    nodes = [NodeShape("A", (1000,) * 6, 8000, 1000), NodeShape("B", (1000,) * 2, 8000, 1000)]
    policy = make_policy("accel", [SHARE], nodes)
    assert isinstance(policy, AccelPolicy) and policy.context is not None
    assert policy.context.gpu_share == (("A", 0.75), ("B", 0.25))
    assert policy.histogram.observations == 0  # no advance knowledge of the workload
