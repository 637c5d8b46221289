"""FGD math and the online workload histogram (accel.placement.fragmentation)."""

from __future__ import annotations

import math
import random

import pytest

from accel.placement.fragmentation import (
    fgd_score,
    fragmentation_score,
    node_fragmentation,
    stranded_gpu_milli,
)
from accel.placement.shapes import ClusterContext, NodeShape, PodShape, pod_fits, shape_frag
from accel.placement.workload_mix import TypicalMix, WorkloadHistogram

HALF = PodShape(cpu_milli=1000, gpu_milli=500, gpu_count=1)
WHOLE = PodShape(cpu_milli=2000, gpu_milli=1000, gpu_count=1)
CPU_ONLY = PodShape(cpu_milli=1000, gpu_milli=0, gpu_count=0)
# Paper-style worked example: 2-GPU node, device 0 free, device 1 half used, 8 cores left.
NODE = NodeShape(gpu_type="A", free_milli=(1000, 500), cpu_left_milli=8000, memory_left_mib=1024)
TYPICAL = ((HALF, 0.5), (WHOLE, 0.3), (CPU_ONLY, 0.2))


def test_worked_example_node_fragmentation() -> None:
    # HALF fits on both devices: fragment 0. WHOLE fits only on device 0: the 500 on device 1 is
    # fragment. CPU_ONLY can use no GPU: all 1500 idle milli are fragment.
    # F = 0.5*0 + 0.3*500 + 0.2*1500 = 450
    assert node_fragmentation(NODE, TYPICAL) == pytest.approx(450.0)


def test_worked_example_fgd_score_prefers_the_half_used_device() -> None:
    # device 0 -> (500, 500): WHOLE no longer fits, F' = 0.3*1000 + 0.2*1000 = 500, dF = -50 -> 48
    # device 1 -> (1000, 0):  everything fits,      F' = 0.2*1000 = 200,          dF = 250 -> 56
    assert int(100 / (1 + math.exp(0.05))) == 48
    assert fgd_score(NODE, HALF, TYPICAL) == (56, (1,))


def test_cpu_shortage_turns_a_fitting_class_into_fragment() -> None:
    tight = NodeShape(gpu_type="A", free_milli=(1000, 500), cpu_left_milli=1500)
    # WHOLE needs 2000m CPU: lacks CPU, so its fragment is all 1500 idle milli.
    assert node_fragmentation(tight, TYPICAL) == pytest.approx(0.5 * 0 + 0.3 * 1500 + 0.2 * 1500)


def test_gpu_type_mismatch_is_no_access() -> None:
    only_b = PodShape(cpu_milli=1000, gpu_milli=500, gpu_count=1, gpu_types=frozenset({"B"}))
    assert node_fragmentation(NODE, ((only_b, 1.0),)) == pytest.approx(1500.0)


def test_whole_gpu_pod_uses_lowest_free_devices_and_scores_once() -> None:
    node = NodeShape(gpu_type="A", free_milli=(300, 1000, 1000, 1000), cpu_left_milli=64000)
    two = PodShape(cpu_milli=1000, gpu_milli=1000, gpu_count=2)
    score, devices = fgd_score(node, two, ((two, 1.0),))
    assert devices == (1, 2)
    # before: `two` fits, fragment = 300; after (300, 0, 0, 1000): `two` no longer fits -> 1300
    assert score == int(100 / (1 + math.exp(1.0)))


@pytest.mark.parametrize(
    ("pod", "fits"),
    [
        pytest.param(HALF, True, id="half-gpu-fits"),
        pytest.param(PodShape(1000, 600, 1), True, id="600-milli-fits-on-free-device"),
        pytest.param(PodShape(1000, 1000, 2), False, id="two-whole-gpus-do-not-fit"),
        pytest.param(PodShape(9000, 0, 0), False, id="cpu-too-large"),
        pytest.param(PodShape(1000, 0, 0, memory_mib=2048), False, id="memory-too-large"),
        pytest.param(PodShape(1000, 500, 1, frozenset({"B"})), False, id="wrong-gpu-model"),
        pytest.param(PodShape(1000, 500, 1, frozenset({"A", "B"})), True, id="model-in-spec-list"),
    ],
)
def test_pod_fits(pod: PodShape, fits: bool) -> None:
    assert pod_fits(NODE, pod) is fits


def test_histogram_keeps_top_shapes_until_threshold_and_renormalises() -> None:
    hist = WorkloadHistogram.from_shapes([HALF] * 6 + [WHOLE] * 3 + [CPU_ONLY])
    typical = hist.typical(0.9)
    assert [s for s, _ in typical] == [HALF, WHOLE]
    assert [p for _, p in typical] == pytest.approx([6 / 9, 3 / 9])
    assert [s for s, _ in hist.typical(1.0)] == [HALF, WHOLE, CPU_ONLY]


def test_histogram_ties_go_to_the_larger_shape_like_fgd() -> None:
    hist = WorkloadHistogram.from_shapes([HALF, WHOLE])
    assert [s for s, _ in hist.typical(0.5)] == [WHOLE]


def test_histogram_starts_uninformed() -> None:
    hist = WorkloadHistogram()
    assert hist.typical() == ()
    assert node_fragmentation(NODE, hist.mix()) == 0.0


def test_half_life_halves_old_observations() -> None:
    hist = WorkloadHistogram(half_life=10)
    hist.observe(HALF)
    for _ in range(10):
        hist.observe(WHOLE, weight=0.0)
    hist.observe(WHOLE, weight=0.5)
    # HALF decayed to 0.5 * 2**(-1/10) relative to the newest weight 0.5
    weights = dict(hist.typical(1.0))
    assert weights[WHOLE] > weights[HALF]
    assert weights[HALF] / weights[WHOLE] == pytest.approx(2 ** (-1 / 10))


def test_invalid_half_life_is_rejected() -> None:
    with pytest.raises(ValueError, match="half_life"):
        WorkloadHistogram(half_life=0)


def test_accel_score_is_fgd_delta_on_a_coarser_scale() -> None:
    mix = TypicalMix(TYPICAL)
    # same device as FGD; dF = 250 -> int(50 * sigmoid(0.25)) = 28
    assert fragmentation_score(NODE, HALF, mix) == (28.0, (1,))
    assert fragmentation_score(NODE, HALF, mix, levels=100) == (56.0, (1,))


def test_accel_score_accepts_a_histogram() -> None:
    hist = WorkloadHistogram.from_shapes([HALF, HALF, WHOLE])
    assert fragmentation_score(NODE, HALF, hist)[1] == (1,)


@pytest.mark.parametrize(
    ("idle", "cpu_left", "ratio", "stranded"),
    [
        pytest.param(2000, 40000, 12.0, 0.0, id="cpu-feeds-all-idle-gpus"),
        pytest.param(2000, 12000, 12.0, 1000.0, id="cpu-feeds-one-of-two-gpus"),
        pytest.param(8000, 0, 12.0, 8000.0, id="no-cpu-strands-everything"),
        pytest.param(0, 0, 12.0, 0.0, id="no-idle-gpu-nothing-stranded"),
    ],
)
def test_stranded_gpu_milli(idle: int, cpu_left: int, ratio: float, stranded: float) -> None:
    assert stranded_gpu_milli(idle, cpu_left, ratio) == pytest.approx(stranded)


@pytest.mark.parametrize(
    ("idle", "cpu_left", "memory_left", "stranded"),
    [
        pytest.param(2000, 40000, 100_000, 0.0, id="cpu-and-memory-feed-all-idle-gpus"),
        pytest.param(2000, 40000, 40_000, 1000.0, id="memory-feeds-one-of-two-gpus"),
        pytest.param(2000, 12000, 100_000, 1000.0, id="cpu-feeds-one-of-two-gpus"),
        pytest.param(2000, 6000, 20_000, 1500.0, id="the-scarcer-of-cpu-and-memory-counts"),
        pytest.param(8000, 96000, 0, 8000.0, id="no-memory-strands-everything"),
    ],
)
def test_stranded_gpu_milli_with_memory(idle: int, cpu_left: int, memory_left: int, stranded: float) -> None:
    # 12 cpu milli and 40 MiB per GPU milli (about the openb default trace's 11 cores and 41 GiB per GPU)
    assert stranded_gpu_milli(idle, cpu_left, 12.0, memory_left, 40.0) == pytest.approx(stranded)
    cpu_only = stranded_gpu_milli(idle, cpu_left, 12.0)
    assert stranded_gpu_milli(idle, cpu_left, 12.0, memory_left, None) == cpu_only


def test_histogram_learns_memory_per_gpu_milli_of_gpu_pods_with_decay() -> None:
    hist = WorkloadHistogram(half_life=1)
    assert hist.memory_per_gpu_milli is None
    hist.observe(CPU_ONLY, memory_mib=500_000)  # CPU-only pods feed no GPU: not counted
    assert hist.memory_per_gpu_milli is None
    hist.observe(WHOLE, memory_mib=40_000)
    assert hist.memory_per_gpu_milli == pytest.approx(40.0)
    hist.observe(PodShape(cpu_milli=1000, gpu_milli=500, gpu_count=1, memory_mib=5000))  # from the shape
    # the older pod counts half: (0.5 * 40000 + 5000) / (0.5 * 1000 + 500)
    assert hist.memory_per_gpu_milli == pytest.approx(25.0)
    assert hist.mix().memory_per_gpu_milli == pytest.approx(25.0)
    assert WorkloadHistogram.from_shapes([HALF, WHOLE]).mix().memory_per_gpu_milli is None


def test_memory_stranding_keeps_memory_hungry_pods_off_memory_poor_nodes() -> None:
    # Two GPU-free-equal nodes; a CPU-only pod with 300 GiB would leave the small-memory node unable
    # to feed its GPUs at 40 MiB per GPU milli. Without a learned memory ratio (the extender) both tie.
    big_memory = PodShape(cpu_milli=1000, gpu_milli=0, gpu_count=0, memory_mib=300 * 1024)
    poor = NodeShape(gpu_type="A", free_milli=(1000,) * 8, cpu_left_milli=96000, memory_left_mib=384 * 1024)
    rich = NodeShape(gpu_type="A", free_milli=(1000,) * 8, cpu_left_milli=96000, memory_left_mib=768 * 1024)
    with_memory = TypicalMix(((WHOLE, 1.0),), memory_per_gpu_milli=40.0)
    rich_score, poor_score = (fragmentation_score(n, big_memory, with_memory)[0] for n in (rich, poor))
    assert rich_score > poor_score
    without = TypicalMix(((WHOLE, 1.0),))
    assert fragmentation_score(rich, big_memory, without) == fragmentation_score(poor, big_memory, without)


def test_mix_cpu_per_gpu_ratio_counts_gpu_pods_only() -> None:
    # HALF: 0.5 * 1000 cpu per 0.5 * 500 milli; WHOLE: 0.3 * 2000 per 0.3 * 1000 -> 1100 / 550
    assert TypicalMix(TYPICAL).cpu_per_gpu_milli == pytest.approx(2.0)
    assert TypicalMix(((CPU_ONLY, 1.0),)).cpu_per_gpu_milli is None


def test_stranding_term_sends_cpu_pods_to_cpu_rich_nodes() -> None:
    mix = TypicalMix(((WHOLE, 1.0),))  # 2 cpu milli per GPU milli
    balanced = NodeShape(gpu_type="A", free_milli=(1000, 1000), cpu_left_milli=4000)
    cpu_rich = NodeShape(gpu_type="A", free_milli=(1000, 1000), cpu_left_milli=64000)
    # FGD sees no change on either node (WHOLE still fits); the CPU pod strands 500 milli on the
    # balanced node: int(50 * sigmoid(-0.5)) = 18 vs int(50 * sigmoid(0)) = 25.
    assert fragmentation_score(balanced, CPU_ONLY, mix) == (18.0, ())
    assert fragmentation_score(cpu_rich, CPU_ONLY, mix) == (25.0, ())
    assert fragmentation_score(balanced, CPU_ONLY, mix, strand_weight=0.0) == (25.0, ())
    assert fgd_score(balanced, CPU_ONLY, mix) == fgd_score(cpu_rich, CPU_ONLY, mix)


def test_vectorised_fragmentation_equals_the_rule_term_by_term() -> None:
    spec = PodShape(cpu_milli=4000, gpu_milli=1000, gpu_count=2, gpu_types=frozenset({"B"}))
    typical = ((HALF, 0.4), (WHOLE, 0.25), (CPU_ONLY, 0.15), (spec, 0.1), (PodShape(500, 190, 1), 0.1))
    mix = TypicalMix(typical)
    rng = random.Random(7)
    for _ in range(500):
        free = tuple(rng.choice((0, 10, 190, 500, 810, 1000)) for _ in range(rng.choice((1, 2, 4, 8))))
        cpu, gpu_type = rng.randrange(0, 6000), rng.choice("AB")
        expected = math.fsum(p * shape_frag(free, cpu, gpu_type, m) for m, p in typical)
        assert mix.fragmentation(gpu_type, free, cpu) == expected


def test_cluster_context_shares_gpu_devices_by_model() -> None:
    nodes = [NodeShape("A", (1000,) * 8, 1), NodeShape("B", (0, 500), 1), NodeShape("C", (), 1)]
    assert ClusterContext.from_nodes(nodes).gpu_share == (("A", 0.8), ("B", 0.2))
    assert ClusterContext.from_nodes([]).gpu_share == ()


def test_type_pressure_is_constrained_demand_over_capacity_share_capped_at_one() -> None:
    only_b = PodShape(cpu_milli=1000, gpu_milli=1000, gpu_count=1, gpu_types=frozenset({"B"}))
    a_or_b = PodShape(cpu_milli=1000, gpu_milli=1000, gpu_count=2, gpu_types=frozenset({"A", "B"}))
    mix = TypicalMix(((WHOLE, 0.5), (only_b, 0.25), (a_or_b, 0.25)))
    # GPU demand: WHOLE 500, only_b 250, a_or_b 500 (split 250/250) -> A 0.2, B 0.4 of 1250
    assert mix.type_demand == pytest.approx({"A": 0.2, "B": 0.4})
    context = ClusterContext((("A", 0.9), ("B", 0.1)))
    assert mix.type_pressure(context) == pytest.approx({"A": 0.2 / 0.9, "B": 1.0})


def test_scarcity_term_keeps_scarce_models_for_constrained_pods() -> None:
    only_b = PodShape(cpu_milli=1000, gpu_milli=1000, gpu_count=1, gpu_types=frozenset({"B"}))
    mix = TypicalMix(((WHOLE, 0.5), (only_b, 0.5)))
    context = ClusterContext((("A", 0.9), ("B", 0.1)))  # B: pressure min(1, 0.5 / 0.1) = 1
    node_a = NodeShape(gpu_type="A", free_milli=(1000, 1000), cpu_left_milli=64000)
    node_b = NodeShape(gpu_type="B", free_milli=(1000, 1000), cpu_left_milli=64000)
    plain_a, plain_b = (fragmentation_score(n, WHOLE, mix)[0] for n in (node_a, node_b))
    aware_a, aware_b = (fragmentation_score(n, WHOLE, mix, context=context)[0] for n in (node_a, node_b))
    # A: pressure 0 (no pod needs A) -> unchanged; B: -0.3 * 1000 milli -> lower score
    assert aware_a == plain_a and aware_b < plain_b


def _shared(cpu: int, milli: int) -> PodShape:
    return PodShape(cpu_milli=cpu, gpu_milli=milli, gpu_count=1)


# openb-like mix: whole GPUs, 810s, 470s, 650s and the 320s / 230s that close a 650's 350.
OPENB_LIKE = TypicalMix((
    (PodShape(cpu_milli=12000, gpu_milli=1000, gpu_count=1), 0.4), (_shared(3000, 810), 0.2),
    (_shared(12000, 470), 0.15), (_shared(4000, 320), 0.1), (_shared(12000, 650), 0.08),
    (_shared(4000, 230), 0.05), (_shared(4000, 110), 0.005),
))


def test_fill_sizes_keep_common_shared_sizes_and_whole_gpus_with_their_least_cpu() -> None:
    # 110 is 0.005 / 0.585 = 0.9 % of the shared pods: below 3 %, a gap only it closes stays idle
    assert OPENB_LIKE.fill_sizes(0.03) == (
        (230, 4000), (320, 4000), (470, 12000), (650, 12000), (810, 3000), (1000, 12000))
    assert TypicalMix(((WHOLE, 1.0),)).fill_sizes(0.03) == ((1000, 2000),)


def test_fill_sizes_leave_out_sizes_an_810s_gaps_absorb() -> None:
    # 160s fit only into gaps; every 810 leaves 190 and 810s outnumber 160s, so the 160s are spoken
    # for: a 470 + 320 device's 210 is not "closed to 50 by a 160".
    with_160 = TypicalMix((*OPENB_LIKE.typical, (_shared(4000, 160), 0.05)))
    assert 160 not in [size for size, _ in with_160.fill_sizes(0.03)]
    assert with_160.fill_residue((210,), 64000, 0.03) == 210
    # more 160s than 810s: the 810s cannot absorb them all, they close other gaps too
    many_160 = TypicalMix((*OPENB_LIKE.typical, (_shared(4000, 160), 0.3)))
    assert 160 in [size for size, _ in many_160.fill_sizes(0.03)]
    assert many_160.fill_residue((210,), 64000, 0.03) == 50
    # sizes of at most 500 pair with themselves: a 500-only mix keeps 500
    assert TypicalMix(((_shared(1000, 500), 1.0),)).fill_sizes(0.03) == ((500, 1000),)


@pytest.mark.parametrize(
    ("free", "cpu_left", "residue"),
    [
        pytest.param((530,), 64000, 60, id="470s-gap-closed-by-a-470"),
        pytest.param((350,), 64000, 30, id="650s-gap-closed-by-a-320"),
        pytest.param((120,), 64000, 120, id="nothing-common-closes-120"),
        pytest.param((190,), 64000, 190, id="810s-sliver"),
        pytest.param((1000, 0), 64000, 0, id="free-and-full-devices-count-0"),
        pytest.param((530, 350), 64000, 90, id="partly-used-devices-add-up"),
        pytest.param((530,), 4000, 70, id="cpu-left-only-feeds-the-small-sizes"),
        pytest.param((530,), 2000, 530, id="no-cpu-nothing-closes-it"),
    ],
)
def test_fill_residue(free: tuple[int, ...], cpu_left: int, residue: int) -> None:
    assert OPENB_LIKE.fill_residue(free, cpu_left, 0.03) == residue


def test_fill_term_keeps_a_650s_gap_for_a_320() -> None:
    # a 230 in a 650's 350 leaves 120 that nothing common closes; next to another 230 (770 free)
    # it leaves 540 = 320 + 230 + ... . FGD alone prefers the 350 gap, the fill term does not.
    pod = _shared(4000, 230)
    gap_350 = NodeShape(gpu_type="A", free_milli=(350, 1000), cpu_left_milli=64000)
    gap_770 = NodeShape(gpu_type="A", free_milli=(770, 1000), cpu_left_milli=64000)
    plain = [fragmentation_score(n, pod, OPENB_LIKE, fill_weight=0.0, lock_weight=0.0)[0]
             for n in (gap_350, gap_770)]
    filled = [fragmentation_score(n, pod, OPENB_LIKE, lock_weight=0.0)[0] for n in (gap_350, gap_770)]
    assert plain[0] > plain[1]
    assert filled[0] < filled[1]


@pytest.mark.parametrize(
    ("device_free", "milli", "cpu_left", "lock_in"),
    [
        pytest.param(450, 320, 64000, 100, id="320-in-a-550s-gap-leaves-130-fresh-30"),
        pytest.param(350, 320, 64000, 0, id="320-closes-a-650s-gap-as-well-as-fresh"),
        pytest.param(530, 470, 64000, 0, id="470-pairs-with-a-470"),
        pytest.param(350, 230, 64000, 50, id="230-in-a-650s-gap-leaves-120-fresh-70"),
        pytest.param(230, 230, 64000, 0, id="exact-fit-never-locks-in"),
        pytest.param(1000, 320, 64000, 0, id="a-fresh-device-is-the-reference"),
        pytest.param(200, 320, 64000, 0, id="does-not-fit"),
    ],
)
def test_fill_lock_in(device_free: int, milli: int, cpu_left: int, lock_in: int) -> None:
    assert OPENB_LIKE.fill_lock_in(device_free, milli, cpu_left, 0.03) == lock_in


def test_lock_in_term_sends_a_320_to_a_fresh_device_not_a_550s_gap() -> None:
    # fill_residue counts the 550's 450 as 130 already (a 320 is its best closure), so the fill term
    # sees the 320 there as free and FGD prefers it; on a fresh device it leaves 680 that a 650
    # closes to 30. The lock-in term charges the 100 milli difference.
    pod = _shared(4000, 320)
    gap_450 = NodeShape(gpu_type="A", free_milli=(450, 0), cpu_left_milli=64000)
    fresh = NodeShape(gpu_type="A", free_milli=(1000, 0), cpu_left_milli=64000)
    without = [fragmentation_score(n, pod, OPENB_LIKE, lock_weight=0.0)[0] for n in (gap_450, fresh)]
    with_lock = [fragmentation_score(n, pod, OPENB_LIKE)[0] for n in (gap_450, fresh)]
    assert without[0] > without[1]
    assert with_lock[0] < with_lock[1]


def test_fill_term_sees_a_cpu_pod_starving_partly_used_devices() -> None:
    # the CPU-only pod leaves 3 cores: only the 810-pods (3 cores) still fit the node and none fits
    # the 470's 530 gap, so its 530 milli become unclosable; on the node without partly used
    # devices the same CPU loss costs the fill term nothing.
    cpu_pod = PodShape(cpu_milli=13000, gpu_milli=0, gpu_count=0)
    partly = NodeShape(gpu_type="A", free_milli=(530, 0), cpu_left_milli=16000)
    untouched = NodeShape(gpu_type="A", free_milli=(1000, 0), cpu_left_milli=16000)
    assert OPENB_LIKE.fill_residue(partly.free_milli, 3000, 0.03) == 530
    on_partly = fragmentation_score(partly, cpu_pod, OPENB_LIKE)[0]
    assert on_partly < fragmentation_score(partly, cpu_pod, OPENB_LIKE, fill_weight=0.0)[0]
    assert fragmentation_score(untouched, cpu_pod, OPENB_LIKE) == fragmentation_score(
        untouched, cpu_pod, OPENB_LIKE, fill_weight=0.0)
