"""Go's `math/rand` (the pre-1.20 global source), bit for bit, so a replay draws the FGD simulator's
own random numbers: the same arrival order, tuned workload and node priority per seed.

Why: the published numbers are 10-seed means from a Go program. With Python's RNG our seeds are
independent samples, and a high-variance cell (Random on multigpu50: sd ~1 pp) can miss the
published mean by more than the tolerance through noise alone. With Go's stream the deterministic
policies reproduce the published per-seed allocation curves exactly (see `workload.py`).

The generator (Go's `rngSource`, BSD-licensed Go source) is an additive lagged Fibonacci generator
x[n] = x[n-607] + x[n-273] mod 2^64, seeded by a Park-Miller LCG XORed with `rngCooked`: the state
of the same generator, seeded with 1 through a slightly different LCG mix, after 7.8e12 steps. Go
ships that table as a constant; here it is derived on first use by raising x to the 7.8e12-th power
modulo the generator's characteristic polynomial (43 squarings of a degree-606 polynomial, ~0.2 s)
instead of being copied. Tests pin the result to published Go outputs for seed 1.

Only what the simulator calls is here: Int63, Int31, Uint32, Int31n/Intn, the unexported int31n
(Lemire's method, used by Shuffle), Shuffle, Perm, Float64.
"""

from __future__ import annotations

import functools
from collections.abc import MutableSequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RNG_LEN = 607
RNG_TAP = 273
_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1
_INT32_MAX = (1 << 31) - 1
_COOKED_STEPS = 7_800_000_000_000  # "780e10" in Go's gen_cooked.go
_ZERO_SEED = 89482311  # what Go seeds with when asked for seed 0


def _seedrand(x: int) -> int:
    """Park-Miller: x[n+1] = 48271 * x[n] mod (2^31 - 1), in Go's Schrage form."""
    hi, lo = divmod(x, 44488)
    x = 48271 * lo - 3399 * hi
    return x + _INT32_MAX if x < 0 else x


def _seeded_vector(seed: int, high_shift: int, mid_shift: int) -> list[int]:
    """The 607 LCG-mixed words both Go's Seed and gen_cooked.go start from (they differ in shifts)."""
    seed %= _INT32_MAX
    if seed == 0:
        seed = _ZERO_SEED
    x, vec = seed, [0] * RNG_LEN
    for i in range(-20, RNG_LEN):
        x = _seedrand(x)
        if i >= 0:
            u = (x << high_shift) & _MASK64
            x = _seedrand(x)
            u ^= (x << mid_shift) & _MASK64
            x = _seedrand(x)
            vec[i] = u ^ x
    return vec


def _polymul_mod(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """a * b mod (x^607 - x^334 - 1), coefficients mod 2^64 (uint64 arithmetic wraps)."""
    full = [int(v) for v in np.convolve(a, b)]
    for k in range(len(full) - 1, RNG_LEN - 1, -1):
        if full[k]:  # x^k = x^(k-273) + x^(k-607)
            full[k - RNG_LEN] = (full[k - RNG_LEN] + full[k]) & _MASK64
            full[k - RNG_TAP] = (full[k - RNG_TAP] + full[k]) & _MASK64
    return np.array(full[:RNG_LEN], dtype=np.uint64)


def _x_power(n: int) -> list[int]:
    result = np.zeros(RNG_LEN, dtype=np.uint64)
    result[0] = 1
    base = np.zeros(RNG_LEN, dtype=np.uint64)
    base[1] = 1
    while n:
        if n & 1:
            result = _polymul_mod(result, base)
        n >>= 1
        if n:
            base = _polymul_mod(base, base)
    return [int(v) for v in result]


def _times_x(poly: list[int]) -> list[int]:
    top = poly[-1]
    out = [0, *poly[:-1]]
    if top:  # x^607 = x^334 + 1
        out[0] = (out[0] + top) & _MASK64
        out[RNG_LEN - RNG_TAP] = (out[RNG_LEN - RNG_TAP] + top) & _MASK64
    return out


def advance(vec: list[int], steps: int) -> list[int]:
    """The feedback register after `steps` draws from a freshly seeded one (tap 0, feed 334).

    Draw n (1-based) writes y[n] = y[n-607] + y[n-273] at index (334 - n) mod 607, so the fresh
    register holds y[-606..0] and index i ends up holding the latest y[n] with n = 334 - i (mod
    607). Each y[n] is the initial words dotted with x^(n+606) mod the characteristic polynomial.
    """
    if steps < RNG_LEN:
        raise ValueError(f"advance() is for long jumps; {steps} < {RNG_LEN} steps, draw them instead")
    initial = [0] * RNG_LEN
    for i, word in enumerate(vec):
        initial[(334 - i + 606) % RNG_LEN] = word  # y[n0] with n0 in [-606, 0] sits at n0 + 606
    out = [0] * RNG_LEN
    poly = _x_power(steps)  # x^((steps - 606) + 606)
    for n in range(steps - 606, steps + 1):
        out[(334 - n) % RNG_LEN] = sum(c * y for c, y in zip(poly, initial, strict=True)) & _MASK64
        poly = _times_x(poly)
    return out


@functools.cache
def cooked() -> tuple[int, ...]:
    """Go's `rngCooked` table as unsigned 64-bit words."""
    return tuple(advance(_seeded_vector(1, 20, 10), _COOKED_STEPS))


@dataclass(frozen=True, slots=True)
class GoRandState:
    """A snapshot of a generator, so several replays can start from the same point."""

    tap: int
    feed: int
    vec: tuple[int, ...]


class GoRand:
    """One Go `*rand.Rand` over an `rngSource`, e.g. the package-level source after `rand.Seed`."""

    __slots__ = ("_feed", "_tap", "_vec")

    def __init__(self, seed: int) -> None:
        table = cooked()
        words = _seeded_vector(seed, 40, 20)
        self._vec = [w ^ c for w, c in zip(words, table, strict=True)]
        self._tap, self._feed = 0, RNG_LEN - RNG_TAP

    @classmethod
    def from_state(cls, state: GoRandState) -> GoRand:
        rng = cls.__new__(cls)
        rng._vec, rng._tap, rng._feed = list(state.vec), state.tap, state.feed
        return rng

    def state(self) -> GoRandState:
        return GoRandState(self._tap, self._feed, tuple(self._vec))

    def uint64(self) -> int:
        self._tap = self._tap - 1 if self._tap else RNG_LEN - 1
        self._feed = self._feed - 1 if self._feed else RNG_LEN - 1
        x = (self._vec[self._feed] + self._vec[self._tap]) & _MASK64
        self._vec[self._feed] = x
        return x

    def int63(self) -> int:
        return self.uint64() & _MASK63

    def int31(self) -> int:
        return self.int63() >> 32

    def uint32(self) -> int:
        return self.int63() >> 31

    def int31n(self, n: int) -> int:
        """Go's exported Int31n (rejection sampling); Intn uses it for every n below 2^31."""
        if not 0 < n <= _INT32_MAX:
            raise ValueError(f"Int31n needs 0 < n < 2^31, got {n}")
        if n & (n - 1) == 0:
            return self.int31() & (n - 1)
        limit = _INT32_MAX - (1 << 31) % n
        v = self.int31()
        while v > limit:
            v = self.int31()
        return v % n

    intn = int31n

    def _int31n_lemire(self, n: int) -> int:
        """Go's unexported int31n (multiply-shift), which Shuffle uses instead of Int31n."""
        prod = self.uint32() * n
        low = prod & 0xFFFFFFFF
        if low < n:
            threshold = ((1 << 32) - n) % n
            while low < threshold:
                prod = self.uint32() * n
                low = prod & 0xFFFFFFFF
        return prod >> 32

    def shuffle(self, items: MutableSequence[Any]) -> None:
        if len(items) > _INT32_MAX:
            raise ValueError("shuffle of more than 2^31 items is not emulated")
        for i in range(len(items) - 1, 0, -1):
            j = self._int31n_lemire(i + 1)
            items[i], items[j] = items[j], items[i]

    def perm(self, n: int) -> list[int]:
        out = [0] * n
        for i in range(n):
            j = self.intn(i + 1)
            out[i] = out[j]
            out[j] = i
        return out

    def float64(self) -> float:
        while True:
            f = self.int63() / (1 << 63)
            if f != 1.0:  # rounding can give exactly 1; Go draws again
                return f
