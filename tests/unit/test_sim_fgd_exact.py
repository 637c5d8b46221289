"""The Go-exact FGD typical pods and F(n) (accel/sim/fgd_exact.py)."""

from __future__ import annotations

import random

from accel.placement.fragmentation import node_fragmentation
from accel.placement.shapes import NodeShape, PodShape
from accel.sim.fgd_exact import NA, Q1, Q2, Q3, Q4, XL, XR, GoExactMix, go_typical_pods

V100 = frozenset({"V100M16", "V100M32"})


def _pods(spec_counts: list[tuple[PodShape, str, int]]) -> list[tuple[PodShape, str]]:
    return [(shape, spec) for shape, spec, n in spec_counts for _ in range(n)]


def test_spec_strings_are_separate_keys_even_for_the_same_model_set() -> None:
    shape = PodShape(8000, 1000, 1, V100)
    typical = go_typical_pods(_pods([(shape, "V100M16|V100M32", 3), (shape, "V100M16|V100M32|V100M32", 1)]))
    assert [round(p, 6) for _, p in typical] == [0.75, 0.25]  # two entries, one shape


def test_ties_go_to_the_larger_key_and_the_cut_is_95_of_100() -> None:
    a, b, c = PodShape(4000, 500, 1), PodShape(8000, 500, 1), PodShape(2000, 1000, 1)
    # 19 + 19 + 2 pods: 95 % of 40 = 38 -> the two 19s are kept, the larger CPU first
    typical = go_typical_pods(_pods([(a, "", 19), (b, "", 19), (c, "", 2)]))
    assert [s for s, _ in typical] == [b, a]
    assert [p for _, p in typical] == [(19 / 40) / (38 / 40)] * 2  # Go divides twice


def test_when_every_key_is_kept_frequencies_are_not_renormalised() -> None:
    a, b = PodShape(4000, 500, 1), PodShape(8000, 0, 0)
    typical = go_typical_pods(_pods([(a, "", 3), (b, "", 1)]), threshold_pct=100)
    assert [p for _, p in typical] == [3 / 4, 1 / 4]


def _go_reference(mix: GoExactMix, gpu_type: str, free: tuple[int, ...], cpu_left: int) -> float:
    """A line-by-line transcription of frag.go's NodeGpuShareFragAmount + FragAmountSumExceptQ3."""
    data = [0.0] * 7
    idle = sum(free)
    for shape, freq in mix.typical:
        if shape.gpu_milli == 0:
            kind = XL if cpu_left >= shape.cpu_milli else XR
        elif shape.gpu_types and gpu_type not in shape.gpu_types:
            kind = NA
        else:
            hosts = sum(f >= shape.gpu_milli for f in free) >= shape.gpu_count
            kind = (
                (Q3 if cpu_left >= shape.cpu_milli else Q4)
                if hosts
                else (Q2 if cpu_left >= shape.cpu_milli else Q1)
            )
        if kind == Q3:
            frag = sum(f for f in free if f < shape.gpu_milli)
            data[Q2] += freq * float(frag)
            data[Q3] += freq * float(idle - frag)
        else:
            data[kind] += freq * float(idle)
    out = 0.0
    for i in range(7):
        if i != Q3:
            out += data[i]
    return out


def test_fragmentation_is_bit_identical_to_the_sequential_go_loop() -> None:
    rng = random.Random(11)
    shapes = []
    for _ in range(30):
        milli = rng.choice([0, 200, 350, 500, 1000])
        count = 0 if milli == 0 else rng.choice([1, 1, 2, 8]) if milli == 1000 else 1
        types = rng.choice([frozenset(), frozenset({"T4"}), V100]) if milli else frozenset()
        shapes.append(PodShape(rng.choice([1000, 2000, 8000, 16000]), milli, count, types))
    mix = GoExactMix(
        go_typical_pods(
            [(s, "|".join(sorted(s.gpu_types))) for s in shapes for _ in range(rng.randint(1, 9))]
        )
    )
    for _ in range(300):
        free = tuple(rng.choice([0, 50, 130, 500, 650, 1000]) for _ in range(rng.choice([2, 4, 8])))
        gpu_type, cpu = rng.choice(["T4", "V100M16", "A100"]), rng.randint(0, 64) * 1000
        assert mix.fragmentation(gpu_type, free, cpu) == _go_reference(mix, gpu_type, free, cpu)


def test_same_value_as_the_clean_mix_up_to_rounding() -> None:
    shapes = [(PodShape(4000, 500, 1), ""), (PodShape(8000, 1000, 2), ""), (PodShape(6000, 0, 0), "")] * 5
    typical = go_typical_pods(shapes, threshold_pct=100)
    node = NodeShape("T4", (1000, 400, 1000, 0), 20000)
    assert abs(GoExactMix(typical).fragmentation(node.gpu_type, node.free_milli, node.cpu_left_milli)
               - node_fragmentation(node, typical)) < 1e-9
