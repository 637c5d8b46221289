"""Score components against hand-computed values (accel.placement.score_rules,
accel.placement.topology_rules)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from accel.capacity.devices import NodeDevices, Pool
from accel.cluster.job_intent import job_key
from accel.cluster.labels import Topology
from accel.placement.fragmentation import fgd_score, node_fragmentation
from accel.placement.score import combine
from accel.placement.score_rules import (
    MAX_EXTENDER_PRIORITY,
    ShapedRequest,
    choose_assignment,
    device_class,
    fragmentation_raw,
    node_shape,
    normalise,
    normalise_array,
    pod_shape,
    preference_raw,
)
from accel.placement.shapes import NodeShape, PodShape
from accel.placement.topology_rules import (
    closeness,
    group_peers,
    paths,
    raw_by_level_counts,
    raw_from_groups,
    topology_raw,
)
from accel.placement.workload_mix import TypicalMix

LARGE_ANY = ("nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb")


@pytest.mark.parametrize(
    ("node_type", "types", "raw"),
    [
        pytest.param("nvidia-h200-141gb", LARGE_ANY, 10.0, id="first-choice-10"),
        pytest.param("nvidia-h100-80gb", LARGE_ANY, 20 / 3, id="second-of-three"),
        pytest.param("nvidia-a100-80gb", LARGE_ANY, 10 / 3, id="third-of-three"),
        pytest.param("nvidia-l4-24gb", LARGE_ANY, 0.0, id="outside-profile-0"),
        pytest.param("nvidia-l4-24gb", (), 10.0, id="generic-profile-all-10"),
    ],
)
def test_preference(node_type: str, types: tuple[str, ...], raw: float) -> None:
    assert preference_raw(node_type, types) == pytest.approx(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"a": 2.0, "b": 4.0, "c": 3.0}, {"a": 0.0, "b": 10.0, "c": 5.0}, id="min-max"),
        pytest.param({"a": 7.0, "b": 7.0}, {"a": 10.0, "b": 10.0}, id="zero-range-positive"),
        pytest.param({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, id="zero-range-zero"),
        pytest.param({}, {}, id="no-candidates"),
    ],
)
def test_normalise(raw: dict[str, float], expected: dict[str, float]) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    ("parts", "score"),
    [
        pytest.param([(3, 10.0), (2, 5.0), (2, 0.0)], 6, id="weighted-mean-40-over-7-rounds-to-6"),
        pytest.param([(1, 10.0)], MAX_EXTENDER_PRIORITY, id="max"),
        pytest.param([(0, 10.0), (0, 3.0)], 0, id="all-weights-zero"),
        pytest.param([(1, 4.5)], 5, id="half-rounds-up"),
    ],
)
def test_combine(parts: list[tuple[float, float]], score: int) -> None:
    """accel.placement.score rule 4 (the production combine): the weighted mean of the components
    that tell the candidates apart, rounded half up, clamped to 0..10. A second candidate one
    point off everywhere keeps every component active."""
    names = ("preference", "fragmentation", "topology", "scarcity")
    normalised = {
        n: np.array([s, s + 1 if s < 10 else s - 1]) for n, (_, s) in zip(names, parts, strict=False)
    }
    weights = {n: float(w) for n, (w, _) in zip(names, parts, strict=False)}
    combined = combine(normalised, weights, np.array([True, True]))
    assert int(combined.scores[0]) == score


def topo(zone: str | None, spine: str | None, leaf: str | None, rdma: bool = False) -> Topology:
    return Topology(zone=zone, spine=spine, leaf=leaf, rdma=rdma)


@pytest.mark.parametrize(
    ("node", "peer", "value"),
    [
        pytest.param(topo("z1", "s1", "l1"), topo("z1", "s1", "l1"), 10.0, id="same-leaf-path"),
        pytest.param(topo("z1", "s1", "l2"), topo("z1", "s1", "l1"), 6.0, id="same-spine-other-leaf"),
        pytest.param(
            topo("z1", "s2", "l1"), topo("z1", "s1", "l1"), 3.0, id="same-leaf-value-other-spine-is-zone"
        ),
        pytest.param(topo("z2", "s1", "l1"), topo("z1", "s1", "l1"), 0.0, id="other-zone-same-names"),
        pytest.param(topo(None, None, None), topo(None, None, None), 0.0, id="unknown-never-matches"),
    ],
)
def test_closeness_compares_full_paths(node: Topology, peer: Topology, value: float) -> None:
    assert closeness(node, peer) == value


def test_topology_raw_is_mean_closeness_plus_rdma() -> None:
    peers = [("n1", topo("z1", "s1", "l1")), ("n2", topo("z1", "s1", "l2"))]
    # (10 + 6) / 2 * 0.8 + 2 (RDMA) = 8.4
    assert topology_raw("n3", topo("z1", "s1", "l1", rdma=True), peers, in_job=True) == pytest.approx(8.4)
    # same node counts as same leaf even without labels
    assert topology_raw("n1", topo(None, None, None), [("n1", topo(None, None, None))], in_job=True) == 8.0


@pytest.mark.parametrize(
    ("labels", "key"),
    [
        pytest.param({"accel.dev/job": "j"}, ("ns", "j"), id="accel-job"),
        pytest.param({"training.kubeflow.org/job-name": "k"}, ("ns", "k"), id="kubeflow"),
        pytest.param({"volcano.sh/job-name": "v"}, ("ns", "v"), id="volcano"),
        pytest.param({"scheduling.x-k8s.io/pod-group": "g"}, ("ns", "g"), id="pod-group"),
        pytest.param({"pod-group.scheduling.sigs.k8s.io": "o"}, ("ns", "o"), id="old-pod-group"),
        pytest.param({"app": "x"}, None, id="no-job"),
    ],
)
def test_job_key(labels: dict[str, str], key: tuple[str, str] | None) -> None:
    assert job_key("ns", labels) == key


# The FGD worked example (tests/unit/test_fragmentation.py) through the extender's adapter: a
# time-sliced L4 node with 2 GPUs x 2 replicas (a replica = 500 milli), GPU 1 half used.
L4 = "nvidia-l4-24gb"
SHARED = "nvidia.com/gpu.shared"
CLS = frozenset({device_class(L4, SHARED)})
NODE = NodeDevices("n1", L4, {SHARED: Pool(SHARED, (2, 2), (0, 1), slots=2)}, cpu_left_milli=8000)
HALF = ShapedRequest(resource=SHARED, units=1, cpu_milli=1000, types=(L4,))
MIX = TypicalMix(
    (
        (PodShape(1000, 500, 1, CLS), 0.5),
        (PodShape(2000, 1000, 1, CLS), 0.3),
        (PodShape(1000, 0, 0), 0.2),
    )
)


def test_adapter_reproduces_the_fgd_worked_example() -> None:
    shape = node_shape(NODE, NODE.pools[SHARED])
    assert shape == NodeShape(device_class(L4, SHARED), (1000, 500), 8000)
    assert pod_shape(HALF, slots=2) == PodShape(1000, 500, 1, CLS)
    assert node_fragmentation(shape, MIX) == pytest.approx(450.0)
    assert fgd_score(shape, pod_shape(HALF, slots=2), MIX) == (56, (1,))
    raw, devices = fragmentation_raw(NODE, HALF, MIX)
    # accel's 50-step FGD score 28, plus binpack tie term 0.99 * (1 - 1000/2001)
    assert devices == (1,)
    assert raw == pytest.approx(28 + 0.99 * (1 - 1000 / 2001))


def test_spread_prefers_more_idle_within_a_step() -> None:
    raw_bin, _ = fragmentation_raw(NODE, HALF, MIX, strategy="binpack")
    raw_spread, _ = fragmentation_raw(NODE, HALF, MIX, strategy="spread")
    assert raw_spread == pytest.approx(28 + 0.99 * 1000 / 2001)
    assert raw_bin > raw_spread


def test_bind_uses_the_device_the_score_chose() -> None:
    assert choose_assignment(NODE, {SHARED: 1}, HALF, MIX) == {SHARED: (1,)}


def test_whole_gpu_pod_gets_lowest_free_devices() -> None:
    node = NodeDevices("n", "a", {"nvidia.com/gpu": Pool("nvidia.com/gpu", (1, 1, 1, 1), (1, 0, 0, 0))})
    req = ShapedRequest(resource="nvidia.com/gpu", units=2, cpu_milli=0, types=("a",))
    assert choose_assignment(node, {"nvidia.com/gpu": 2}, req, TypicalMix(())) == {"nvidia.com/gpu": (1, 2)}


# ---- vectorised forms: equal bit for bit to the scalar rules -----------------------------------


def _random_topology(rng: random.Random) -> Topology:
    def pick(*values: str | None) -> str | None:
        return rng.choice(values)

    return Topology(
        region=pick("r1", None),
        zone=pick("z1", "z2", None),
        spine=pick("s1", "s2", None),
        leaf=pick("l1", "l2", None),
        rdma=rng.random() < 0.5,
    )


@pytest.mark.parametrize("seed", range(30), ids=lambda s: f"seed-{s}")
def test_raw_by_level_counts_equals_raw_from_groups(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [_random_topology(rng) for _ in range(rng.randint(1, 12))]
    peers = [rng.choice(nodes) for _ in range(rng.randint(0, 10))]
    level_ids: dict[tuple[str | None, ...], int] = {}

    def level(path: tuple[str | None, ...]) -> int:
        return -1 if path[-1] is None else level_ids.setdefault(path, len(level_ids))

    levels = np.array([[level(p) for p in paths(t)] for t in nodes], dtype=np.intp).reshape(len(nodes), 3)
    peer_levels = [[level(p) for p in paths(t)] for t in peers]
    peers_on = np.zeros(len(level_ids) + 1)
    for row in peer_levels:
        for lid in row:
            peers_on[lid + 1] += lid >= 0
    groups = group_peers([("", t) for t in peers])
    same = np.array([rng.randint(0, 2) if peers else 0 for _ in nodes], dtype=np.float64)
    rdma = np.array([t.rdma for t in nodes])
    plain = raw_by_level_counts(levels, rdma, peers_on, len(peers)).tolist()
    with_same = raw_by_level_counts(levels, rdma, peers_on, len(peers), same).tolist()
    for i, topo in enumerate(nodes):
        assert plain[i] == raw_from_groups(paths(topo), topo.rdma, groups, in_job=True)
        expected = raw_from_groups(paths(topo), topo.rdma, groups, same_node=int(same[i]), in_job=True)
        assert with_same[i] == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([2.0, 4.0, 3.0], id="min-max"),
        pytest.param([7.0, 7.0], id="zero-range-positive"),
        pytest.param([0.0, 0.0], id="zero-range-zero"),
        pytest.param([], id="empty"),
        pytest.param([0.1, 0.7, 1e-13 + 0.1, 9.3], id="awkward-floats"),
    ],
)
def test_normalise_array_equals_normalise(raw: list[float]) -> None:
    expected = normalise(dict(enumerate(raw)))
    assert normalise_array(np.array(raw, dtype=np.float64)).tolist() == [expected[i] for i in range(len(raw))]


def test_cluster_context_counts_devices_per_class_for_the_scarcity_term() -> None:
    from accel.capacity.devices import build_node_devices
    from accel.placement.score_rules import cluster_context
    from tests.builders import inventory, node_object

    inv = inventory([node_object("a1"), node_object("a2"), node_object("h1", "nvidia-h100-80gb", gpus=4)])
    reps = [(1, build_node_devices(n, ())) for n in inv.nodes]
    shares = dict(cluster_context(reps).gpu_share)
    assert shares == {"nvidia-a100-80gb|nvidia.com/gpu": 0.8, "nvidia-h100-80gb|nvidia.com/gpu": 0.2}
    assert cluster_context([(2, reps[0][1]), (1, reps[2][1])]) == cluster_context(reps)
