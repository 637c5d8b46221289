"""Mutation's memos (accel.admission.context, accel.admission.plan.MutationMemo) never change a decision.

`AdmissionContext.type_amounts` replaces computing each type's GPU-equivalents per request; the
mutating path reuses one accelerator-request walk for the quota type choice, generic candidates
and prices. Reference: a fresh (cold) context per pod and the direct `gpu_equivalents` of the
pod's view; the shared context below is warmed by every earlier example, as a replica's is.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission.context import gpu_equivalents, light_view
from accel.admission.plan import Decision, MutationMemo, mutate
from accel.quota.ledger import Ledger, Reservation
from tests.builders import example_policy, gpu_pod, make_context
from tests.unit.test_admission_properties import pods

PARSED = example_policy()


def bare(decision: Decision) -> Decision:
    """`decision` as MutationMemo answers it: without the patched pod (`document`)."""
    return replace(decision, document=None)

WARM = make_context(policy=PARSED)
TYPES = ["nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb", "amd-mi300x-192gb", ""]

reservations = st.builds(
    Reservation,
    id=st.text(alphabet="abcdef", min_size=1, max_size=4),
    team=st.sampled_from(["nlp", "research", "vision"]),
    type=st.sampled_from(TYPES),
    amount=st.integers(0, 16).map(Fraction),
    namespace=st.sampled_from(["nlp", "research"]),
    expires=st.just(1e12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods(), held=st.lists(reservations, max_size=4))
def test_warm_memos_decide_as_a_cold_context(pod: dict[str, Any], held: list[Reservation]) -> None:
    ledger = Ledger({r.id: r for r in held})
    namespace = pod["metadata"]["namespace"]
    cold = make_context(policy=PARSED)
    expected = mutate(copy.deepcopy(pod), namespace=namespace, ctx=cold, ledger=ledger, now=1.0)
    assert mutate(pod, namespace=namespace, ctx=WARM, ledger=ledger, now=1.0) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods())
def test_type_amounts_are_each_types_gpu_equivalents(pod: dict[str, Any]) -> None:
    view = light_view(pod)
    for profile in PARSED.policy.profiles:
        types = profile.types
        amounts = WARM.type_amounts(profile, types, view.accelerators)
        assert amounts == {t: gpu_equivalents(view, t, profile, PARSED.catalog) for t in types}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(pods(), min_size=1, max_size=3),
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.lists(reservations, max_size=3), st.sampled_from([1.0, 5.0])),
        min_size=1,
        max_size=8,
    ),
)
def test_memoised_mutation_equals_mutation(
    shapes: list[dict[str, Any]], steps: list[tuple[int, list[Reservation], float]]
) -> None:
    """MutationMemo over a stream of pods of a few templates (repeats hit the memo), each with the
    ledger and time of its moment, answers exactly what a fresh `mutate` answers."""
    memo = MutationMemo()
    for index, held, now in steps:
        pod = shapes[index % len(shapes)]
        namespace = pod["metadata"]["namespace"]
        ledger = Ledger({r.id: replace(r, expires=now + 2.0) for r in held})
        expected = mutate(copy.deepcopy(pod), namespace=namespace, ctx=WARM, ledger=ledger, now=now)
        got = memo.mutate(copy.deepcopy(pod), namespace=namespace, ctx=WARM, ledger=ledger, now=now)
        assert got == replace(expected, document=None)  # MutationMemo's decisions carry no document


def test_memo_hits_for_one_template_and_follows_the_ledger() -> None:
    """A ReplicaSet's pods: the first is planned and only its key kept, the second planned and
    remembered, the third a hit; when the ledger fills the first type's quota line, the same
    template gets the affinity without it (the choice is recomputed per request)."""
    memo = MutationMemo()
    pod = gpu_pod(namespace="nlp", profile="large-any", gpus="8")
    first = memo.mutate(pod, namespace="nlp", ctx=WARM, now=1.0)
    second = memo.mutate(copy.deepcopy(pod), namespace="nlp", ctx=WARM, now=1.0)
    assert second == first and second is not first and (memo.hits, memo.last_hit) == (0, False)
    assert memo.mutate(copy.deepcopy(pod), namespace="nlp", ctx=WARM, now=1.0) is second
    assert (memo.hits, memo.last_hit) == (1, True)
    full = Ledger({"r": Reservation("r", "nlp", "nvidia-h200-141gb", Fraction(16), "nlp", expires=10.0)})
    without_h200 = memo.mutate(pod, namespace="nlp", ctx=WARM, ledger=full, now=1.0)
    assert without_h200 == bare(mutate(pod, namespace="nlp", ctx=WARM, ledger=full, now=1.0)) != first
    assert memo.hits == 1
    assert memo.mutate(pod, namespace="nlp", ctx=WARM, ledger=full, now=1.0) is without_h200
    expired = memo.mutate(pod, namespace="nlp", ctx=WARM, ledger=full, now=11.0)  # the reservation expired
    assert expired is second and memo.hits == 3


def test_pods_that_share_no_shape_keep_no_decision() -> None:
    memo = MutationMemo()
    for index in range(5):
        pod = gpu_pod(namespace="nlp", profile="large-any", gpus="8", labels={"run": str(index)})
        memo.mutate(pod, namespace="nlp", ctx=WARM)
    assert memo._shapes == {} and len(memo._seen) == 5 and memo.hits == 0


def test_a_new_context_starts_the_memo_over() -> None:
    memo = MutationMemo()
    pod = gpu_pod(namespace="nlp", profile="large-any", gpus="8")
    for _ in range(3):
        memo.mutate(pod, namespace="nlp", ctx=WARM)
    assert memo.hits == 1
    other = make_context(policy=example_policy(teams=[{"name": "nlp", "quota": {"*": 1}}]))
    assert memo.mutate(pod, namespace="nlp", ctx=other) == bare(mutate(pod, namespace="nlp", ctx=other))
    assert memo.hits == 1 and not memo.last_hit
