"""FGD math and the online workload histogram (accel.fragmentation)."""

from __future__ import annotations

import math

import pytest

from accel.fragmentation import (
    NodeShape,
    PodShape,
    TypicalMix,
    WorkloadHistogram,
    fgd_score,
    fragmentation_score,
    node_fragmentation,
    pod_fits,
)

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
    assert hist.typical(0.9) == ((HALF, pytest.approx(6 / 9)), (WHOLE, pytest.approx(3 / 9)))
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


def test_histogram_round_trips_through_a_plain_dict() -> None:
    hist = WorkloadHistogram(half_life=50)
    for shape in [HALF, WHOLE, HALF, PodShape(500, 250, 1, frozenset({"A", "B"}))]:
        hist.observe(shape)
    again = WorkloadHistogram.from_dict(hist.to_dict())
    assert dict(again.typical(1.0)) == pytest.approx(dict(hist.typical(1.0)))
    assert again.half_life == 50 and again.observations == 4


def test_histogram_from_dict_names_the_bad_entry() -> None:
    with pytest.raises(ValueError, match=r"shapes\[1\]"):
        WorkloadHistogram.from_dict({"shapes": [
            {"cpu_milli": 1, "gpu_milli": 0, "gpu_count": 0, "weight": 1},
            {"cpu_milli": 1, "weight": 1},
        ]})


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
