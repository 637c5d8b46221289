"""Mutation's per-policy memos (accel.admission.context) never change a decision.

`AdmissionContext.type_amounts` replaces computing each type's GPU-equivalents per request; the
mutating path reuses one accelerator-request walk for the quota type choice, generic candidates
and prices. Reference: a fresh (cold) context per pod and the direct `gpu_equivalents` of the
pod's view; the shared context below is warmed by every earlier example, as a replica's is.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission.context import gpu_equivalents, light_view
from accel.admission.plan import mutate
from accel.quota.ledger import Ledger, Reservation
from tests.builders import example_policy, make_context
from tests.unit.test_admission_properties import pods

PARSED = example_policy()
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
