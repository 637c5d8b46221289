"""The Go math/rand emulation: pinned to outputs Go prints for seed 1, and its own invariants."""

from __future__ import annotations

import pytest

from accel.sim.gorand import RNG_LEN, RNG_TAP, GoRand, _seeded_vector, advance

# What Go (<= 1.19, or any version after rand.Seed) prints for rand.Seed(1): rand.Int63() ...
GO_SEED1_INT63 = [5577006791947779410, 8674665223082153551, 6129484611666145821, 4037200794235010051,
                  3916589616287113937, 6334824724549167320, 605394647632969758, 1443635317331776148,
                  894385949183117216, 2775422040480279449]
# ... rand.Intn(100) (the Go tour's "81 87 47 59") and rand.Int31().
GO_SEED1_INTN100 = [81, 87, 47, 59, 81, 18, 25, 40, 56, 0, 94, 11]
GO_SEED1_INT31 = [1298498081, 2019727887, 1427131847, 939984059, 911902081]


def test_seed_1_reproduces_go_int63() -> None:
    rng = GoRand(1)
    assert [rng.int63() for _ in GO_SEED1_INT63] == GO_SEED1_INT63


def test_seed_1_reproduces_go_intn_and_int31() -> None:
    rng = GoRand(1)
    assert [rng.intn(100) for _ in GO_SEED1_INTN100] == GO_SEED1_INTN100
    rng = GoRand(1)
    assert [rng.int31() for _ in GO_SEED1_INT31] == GO_SEED1_INT31


def test_seed_0_is_go_default_substitute_and_seeds_wrap_at_2_31_minus_1() -> None:
    assert GoRand(0).int63() == GoRand(89482311).int63()
    assert GoRand(5).int63() == GoRand(5 + (1 << 31) - 1).int63()
    assert GoRand(-5).int63() == GoRand((1 << 31) - 1 - 5).int63()


@pytest.mark.parametrize("steps", [RNG_LEN, 1000, 4321])
def test_long_jump_equals_stepping_the_register(steps: int) -> None:
    vec = _seeded_vector(7, 20, 10)
    stepped, tap, feed = list(vec), 0, RNG_LEN - RNG_TAP
    for _ in range(steps):
        tap, feed = (tap - 1) % RNG_LEN, (feed - 1) % RNG_LEN
        stepped[feed] = (stepped[feed] + stepped[tap]) % (1 << 64)
    assert advance(vec, steps) == stepped


def test_advance_refuses_short_jumps() -> None:
    with pytest.raises(ValueError, match="draw them instead"):
        advance([0] * RNG_LEN, 10)


def test_state_round_trip_continues_the_same_stream() -> None:
    rng = GoRand(42)
    for _ in range(1000):
        rng.uint64()
    copy = GoRand.from_state(rng.state())
    assert [rng.uint64() for _ in range(700)] == [copy.uint64() for _ in range(700)]


def test_shuffle_perm_and_intn_stay_in_range_and_are_permutations() -> None:
    rng = GoRand(3)
    items = list(range(500))
    rng.shuffle(items)
    assert sorted(items) == list(range(500)) and items != list(range(500))
    assert sorted(rng.perm(1213)) == list(range(1213))
    draws = [rng.intn(7) for _ in range(2000)]
    assert set(draws) == set(range(7))
    assert all(0.0 <= rng.float64() < 1.0 for _ in range(1000))


def test_intn_rejects_out_of_range_bounds() -> None:
    with pytest.raises(ValueError, match="0 < n < 2\\^31"):
        GoRand(1).intn(0)
