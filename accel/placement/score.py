"""How the extender's score components become one 0..10 score, and how that score is explained.

The components (accel.placement.score_rules, accel.placement.topology_rules and `scarcity_raw` here) are each
normalised
to 0..10 over the candidates first (accel.placement.score_rules rule 1). This module combines them, vectorised
over the candidates, and words the result for the `accel.dev/placement` annotation. The extender,
the slow reference in the tests and `accel explain` all go through these functions.

Rules:
1. Only components that tell the candidates apart take part: a component with the same value on
   every known candidate (a generic pod's type preference, a lone pod's topology) is a constant
   offset that never changes the ranking, and averaging it in would squeeze every score towards
   the middle. The score is the weight-averaged *active* components, so the best candidate on every
   active component gets 10 and the worst 0. When no component is active, all take part (every
   candidate gets the same score, as before). Scarcity only takes part where the profile's type
   preference does not tell the candidates apart (generic profiles, types ranked alike): an
   admin's explicit order ("H200, then H100, then A100") is the policy and is not second-guessed.
2. A job pod's topology dominates: when topology is active and its weight is > 0, its weight is
   raised to twice the other active weights together, so a node next to the job's pods (or, for
   the first pod, in a leaf that holds the whole job) outscores any node that is not.
3. A node held for another job's remaining pods (accel.placement.state's job reservations) keeps
   HELD_SHARE of its score: soft, it is still taken when nothing else fits.
4. The score is the sum of the contributions rounded half up and clamped to 0..10; the explanation
   lists every contribution, the reservation and the rounding, which add up to the score exactly.
5. Scarcity, for a pod that allows several types: per type among the candidates, 10 x (PRICE_SHARE
   x cheapness + (1 - PRICE_SHARE) x plenty). Cheapness ranks the types' premium index (the mean
   of list price per GPU-hour and dense 16-bit TFLOPS, each relative to the highest among the
   candidates' types; catalog list prices alone would rank an H200 below an A100) from the most
   premium (0) to the least (1); plenty = free GPUs of the type / free GPUs of the most plentiful
   one. Premium types are kept for pods that can only use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from accel.placement.score_rules import MAX_EXTENDER_PRIORITY

FloatColumn = npt.NDArray[np.float64]
BoolColumn = npt.NDArray[np.bool_]
IntColumn = npt.NDArray[np.intp]

COMPONENTS: tuple[str, ...] = ("preference", "topology", "fragmentation", "scarcity")
DOMINANCE = 2.0  # rule 2
HELD_SHARE = 0.2  # rule 3
PRICE_SHARE = 0.6  # rule 5
PLACEMENT_ANNOTATION = "accel.dev/placement"
PLACED_REASON = "AcceleratorPlaced"
PLACED_CONTROLLER = "accel-extender"
_FLAT = 1e-9


def premium_index(
    types: Sequence[str], prices: Mapping[str, float], tflops: Mapping[str, float]
) -> dict[str, float]:
    """Rule 5: how premium each type is among `types`, 0..1: the mean of its list price and its
    dense 16-bit throughput, each as a share of the highest among `types` (a fact unknown for any
    of them is left out for all; neither known: 0.5, neutral)."""
    distinct = sorted(set(types))
    facts = [
        f
        for f in (prices, tflops)
        if all(t in f for t in distinct) and max((f[t] for t in distinct), default=0) > 0
    ]
    if not facts:
        return dict.fromkeys(distinct, 0.5)
    return {t: sum(f[t] / max(f[u] for u in distinct) for f in facts) / len(facts) for t in distinct}


def scarcity_raw(
    types: Sequence[str],
    prices: Mapping[str, float],
    free_gpus: Mapping[str, float],
    tflops: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Rule 5 per distinct type in `types` (the candidates' types); 0 for all when fewer than two."""
    distinct = sorted(set(types))
    if len(distinct) < 2:
        return dict.fromkeys(distinct, 0.0)
    premium = premium_index(distinct, prices, tflops or {})
    dearest, cheapest = max(premium.values()), min(premium.values())
    most = max((free_gpus.get(t, 0.0) for t in distinct), default=0.0)
    out: dict[str, float] = {}
    for t in distinct:
        cheapness = (dearest - premium[t]) / (dearest - cheapest) if dearest > cheapest else 0.5
        plenty = free_gpus.get(t, 0.0) / most if most > 0 else 0.0
        out[t] = MAX_EXTENDER_PRIORITY * (PRICE_SHARE * cheapness + (1.0 - PRICE_SHARE) * plenty)
    return out


def room_levels(
    levels: npt.NDArray[np.intp], slots: FloatColumn, need: int
) -> FloatColumn:
    """For a job's first pod: how close a home each candidate offers the *whole* job.

    `levels[i]` holds candidate i's interned (leaf, spine, zone) path ids (-1 unknown), `slots[i]`
    how many of the job's pods fit on it, `need` how many pods the job still has (this one
    included). A candidate scores SAME_LEAF (10) when its leaf's candidates hold `need` pods, else
    SAME_SPINE (6) for its spine, else SAME_ZONE (3) for its zone, else 0 (accel.placement.topology_rules
    rule 2's scale). A candidate that cannot take a pod itself scores 0."""
    from accel.placement.topology_rules import SAME_LEAF, SAME_SPINE, SAME_ZONE

    out = np.zeros(len(levels))
    if not len(levels):
        return out
    for k, value in ((2, SAME_ZONE), (1, SAME_SPINE), (0, SAME_LEAF)):  # narrowest level last: wins
        ids = levels[:, k]
        known = ids >= 0
        if not known.any():
            continue
        room = np.bincount(ids[known], weights=slots[known], minlength=int(ids.max()) + 1)
        fits = np.zeros(len(levels), dtype=bool)
        fits[known] = room[ids[known]] >= need
        out = np.where(fits, value, out)
    out[slots < 1] = 0.0
    return out


@dataclass(frozen=True, slots=True)
class Combined:
    """Per candidate: the score, each component's contribution in score points, the reservation
    penalty (<= 0) and the rounding (rule 4: contributions + reservation + rounding == score)."""

    scores: IntColumn
    contributions: dict[str, FloatColumn]
    reservation: FloatColumn
    rounding: FloatColumn


def active_weights(
    normalised: Mapping[str, FloatColumn],
    weights: Mapping[str, float],
    known: BoolColumn,
    *,
    dominant: str | None,
) -> dict[str, float]:
    """Rules 1 and 2: the weight each component takes part with (0 when it does not)."""
    active: dict[str, float] = {}
    for name, column in normalised.items():
        values = column[known]
        if weights.get(name, 0.0) > 0 and len(values) and float(values.max() - values.min()) > _FLAT:
            active[name] = weights[name]
    if "preference" in active:
        active.pop("scarcity", None)  # rule 1: the profile's own order comes first
    if not active:
        active = {n: w for n, w in weights.items() if n in normalised and w > 0}
    elif dominant in active:
        others = sum(w for n, w in active.items() if n != dominant)
        active[dominant] = max(active[dominant], DOMINANCE * others)
    return active


def combine(
    normalised: Mapping[str, FloatColumn],
    weights: Mapping[str, float],
    known: BoolColumn,
    *,
    dominant: str | None = None,
    held: BoolColumn | None = None,
) -> Combined:
    """Rules 1-4 over the candidates; unknown candidates (`known` False) score 0 with no parts."""
    size = len(known)
    active = active_weights(normalised, weights, known, dominant=dominant)
    total = sum(active.values())
    contributions: dict[str, FloatColumn] = {}
    raw = np.zeros(size)
    for name in COMPONENTS:
        column = normalised.get(name)
        if column is None or name not in active or total <= 0:
            contributions[name] = np.zeros(size)
            continue
        part = np.where(known, active[name] * column / total, 0.0)
        contributions[name] = part
        raw = raw + part
    reservation = np.zeros(size)
    if held is not None and held.any():
        reservation = np.where(held & known, -(1.0 - HELD_SHARE) * raw, 0.0)
    total_raw = raw + reservation
    scores = np.clip(np.floor(total_raw + 0.5), 0, MAX_EXTENDER_PRIORITY).astype(np.intp)
    scores[~known] = 0
    return Combined(scores, contributions, reservation, scores - total_raw)


# ---- explanation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a pod landed where it did (the `accel.dev/placement` annotation, rule 4)."""

    node: str
    accelerator_type: str
    score: int
    components: dict[str, float]  # COMPONENTS plus "reservation" and "rounding", in score points
    runner_up: str | None = None
    runner_up_score: int | None = None
    candidates: int = 1
    job: str | None = None

    def total(self) -> float:
        return sum(self.components.values())

    def to_annotation(self) -> str:
        body: dict[str, object] = {
            "node": self.node,
            "type": self.accelerator_type,
            "score": self.score,
            "components": {k: round(v, 3) for k, v in self.components.items()},
            "candidates": self.candidates,
        }
        if self.runner_up is not None:
            body["runnerUp"] = {"node": self.runner_up, "score": self.runner_up_score}
        if self.job:
            body["job"] = self.job
        return orjson.dumps(body).decode()

    def message(self) -> str:
        """One line for the Event (kubectl describe pod)."""
        parts = " + ".join(f"{k} {self.components.get(k, 0.0):.2f}" for k in COMPONENTS)
        extra = ""
        if abs(self.components.get("reservation", 0.0)) > 1e-9:
            extra += f" {self.components['reservation']:+.2f} (leaf held for another job)"
        kind = self.accelerator_type or "no accelerator"
        text = f"placed on {self.node} ({kind}): score {self.score} = {parts}{extra}"
        if self.runner_up is not None:
            text += f"; runner-up {self.runner_up} scored {self.runner_up_score}"
        else:
            text += "; the only candidate scored"
        if self.job:
            text += f"; job {self.job}"
        return text


class ExplanationError(ValueError):
    """An `accel.dev/placement` annotation that cannot be read."""


def parse_explanation(text: str) -> Explanation:
    """The annotation back as an Explanation; ExplanationError (what is wrong) when malformed."""
    try:
        body = orjson.loads(text)
        components = {str(k): float(v) for k, v in dict(body["components"]).items()}
        runner = body.get("runnerUp") or {}
        return Explanation(
            node=str(body["node"]),
            accelerator_type=str(body.get("type") or ""),
            score=int(body["score"]),
            components=components,
            runner_up=str(runner["node"]) if runner.get("node") else None,
            runner_up_score=int(runner["score"]) if runner.get("score") is not None else None,
            candidates=int(body.get("candidates", 1)),
            job=str(body["job"]) if body.get("job") else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExplanationError(f"{PLACEMENT_ANNOTATION} is not a placement explanation ({exc})") from None


def explain(
    names: Sequence[str],
    combined: Combined,
    chosen: str,
    accelerator_type: str,
    *,
    job: str | None = None,
) -> Explanation:
    """The explanation for `chosen` among the scored `names`; the runner-up is the best other node
    (first in request order on ties)."""
    at = list(names).index(chosen)
    components = {k: float(combined.contributions[k][at]) for k in COMPONENTS}
    components["reservation"] = float(combined.reservation[at])
    components["rounding"] = float(combined.rounding[at])
    runner, runner_score = None, None
    if len(names) > 1:
        others = combined.scores.astype(np.int64).copy()
        others[at] = -1
        best = int(np.argmax(others))
        runner, runner_score = names[best], int(combined.scores[best])
    return Explanation(chosen, accelerator_type, int(combined.scores[at]), components, runner, runner_score,
                       len(names), job)
