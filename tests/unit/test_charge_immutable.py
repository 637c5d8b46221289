"""A pending pod's charge comes from what its author cannot change (issue 21's open hole).

Pods are admitted by the real mutating webhook core (accel.admission.plan.mutate), then their
annotations are edited the way `kubectl annotate --overwrite` would after admission: the type,
the profile, the quota type, the price. The charge (type and GPU-equivalents), the team's usage
and the bind gate must not move.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.plan import mutate
from accel.capacity.inventory import UNDECIDED_TYPE, pod_accelerator_type, pod_gpu_equivalents, team_usage
from accel.capacity.pod_types import TypeIndex, selectable_types
from accel.cluster.pods import PROFILE_ANNOTATION, TYPE_ANNOTATION, parse_pod
from accel.policy.pricing import COST_ANNOTATION, PRICE_ANNOTATION, gpu_hour_price
from accel.quota.bind import bind_check, conversion, decide_conversion, gated_team
from accel.quota.charges import ChargeMemo
from accel.quota.ledger import Ledger
from tests.builders import DEFAULT_NODES, gpu_pod, make_context, make_inventory, shared_example_policy

POLICY = shared_example_policy()
A100, H100, H200, L4 = "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb", "nvidia-l4-24gb"
EDITABLE = (TYPE_ANNOTATION, PROFILE_ANNOTATION, "accel.dev/quota-type", PRICE_ANNOTATION, COST_ANNOTATION)


def admitted(
    namespace: str, profile: str, *, name: str, gpus: str = "2", resource: str = "nvidia.com/gpu"
) -> dict[str, Any]:
    """`profile`'s pod after the mutating webhook, as the API server stores it (pending)."""
    pod = gpu_pod(namespace=namespace, profile=profile, gpus=gpus, name=name, resource=resource)
    decision = mutate(pod, namespace=namespace, ctx=make_context(policy=POLICY))
    assert decision.allowed, decision.finding
    stored = jsonpatch.apply_patch(pod, list(decision.ops))
    stored["metadata"]["uid"] = f"uid-{name}"
    return stored


def annotate(pod: dict[str, Any], **changes: str) -> dict[str, Any]:
    edited = copy.deepcopy(pod)
    edited["metadata"].setdefault("annotations", {}).update(changes)
    return edited


def charge(pod: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> tuple[str, Fraction]:
    inventory = make_inventory(pods or [pod])
    view = parse_pod(pod)
    return (
        pod_accelerator_type(view, inventory, POLICY.catalog),
        pod_gpu_equivalents(view, inventory, POLICY.catalog, POLICY.policy),
    )


def test_a_typed_pending_pod_is_charged_its_affinity_type_whatever_its_type_annotation_says() -> None:
    pod = admitted("nlp", "a100-80gb", name="a")
    assert pod["metadata"]["annotations"][TYPE_ANNOTATION] == A100
    assert charge(pod) == (A100, Fraction(2))
    for forged in (H200, "", "no-such-type"):
        assert charge(annotate(pod, **{TYPE_ANNOTATION: forged})) == (A100, Fraction(2))


def test_a_profile_edit_does_not_move_the_type() -> None:
    pod = admitted("nlp", "a100-80gb", name="a")
    assert charge(annotate(pod, **{PROFILE_ANNOTATION: "premium-h200"})) == (A100, Fraction(2))
    assert charge(annotate(pod, **{PROFILE_ANNOTATION: "large-any", TYPE_ANNOTATION: H100})) == (
        A100,
        Fraction(2),
    )


def test_an_exclusive_pod_reannotated_with_a_time_sliced_profile_still_counts_whole_gpus() -> None:
    pod = admitted("nlp", "premium-h200", name="p")
    assert charge(pod) == (H200, Fraction(2))
    assert charge(annotate(pod, **{PROFILE_ANNOTATION: "notebook-shared"})) == (H200, Fraction(2))


def test_a_time_sliced_pod_keeps_its_slice_charge() -> None:
    pod = admitted("nlp", "notebook-shared", name="nb", gpus="1")
    accel_type, amount = charge(pod)
    assert accel_type == L4 and amount < 1  # a time-slice: 1/replicas of a GPU, as admitted


def test_a_multi_type_pod_stays_undecided_when_its_author_annotates_one_type() -> None:
    pod = admitted("nlp", "large-any", name="m")
    assert charge(pod)[0] == UNDECIDED_TYPE
    assert charge(annotate(pod, **{TYPE_ANNOTATION: H100, "accel.dev/quota-type": H100}))[0] == UNDECIDED_TYPE


def test_a_bound_pod_is_charged_its_node_type() -> None:
    pod = admitted("nlp", "a100-80gb", name="a")
    pod["spec"]["nodeName"] = "h100-1"  # the hardware wins over everything else
    assert charge(annotate(pod, **{TYPE_ANNOTATION: A100}))[0] == H100


def test_type_index_reads_catalog_variants_and_observed_labels() -> None:
    index = TypeIndex(POLICY.catalog, make_inventory().nodes)
    assert index.types_of("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB") == {A100}
    assert index.types_of("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb") == {A100}
    assert index.types_of("nvidia.com/gpu.product", "NVIDIA-L4-SHARED") == {L4}
    assert index.types_of("nvidia.com/gpu.product", "made-up") == frozenset()
    key = "nvidia.com/gpu.product"
    two_terms = (((key, "In", ("NVIDIA-A100-SXM4-80GB",)),), ((key, "In", ("NVIDIA-H100-80GB-HBM3",)),))
    assert selectable_types(two_terms, {}, index) == {A100, H100}
    assert selectable_types(two_terms, {key: "NVIDIA-H100-80GB-HBM3"}, index) == {H100}
    open_term = (*two_terms, (("zone", "In", ("a",)),))
    assert selectable_types(open_term, {}, index) is None
    assert selectable_types(None, {}, index) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a100-80gb", "premium-h200", "large-any", "notebook-shared", "gpu-any"]),
            st.dictionaries(
                st.sampled_from(EDITABLE),
                st.sampled_from(
                    [
                        A100,
                        H100,
                        H200,
                        L4,
                        "",
                        "0.01",
                        "premium-h200",
                        "notebook-shared",
                        "gpu-any",
                        "large-any",
                    ]
                ),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_property_no_annotation_edit_changes_any_charge_or_team_usage(
    cases: list[tuple[str, dict[str, str]]],
) -> None:
    pods = [
        admitted("nlp", profile, name=f"p{i}", gpus="1" if profile == "notebook-shared" else "2")
        for i, (profile, _) in enumerate(cases)
    ]
    edited = [annotate(pod, **changes) for pod, (_, changes) in zip(pods, cases, strict=True)]
    before, after = make_inventory(pods), make_inventory(edited)
    assert team_usage(before, catalog=POLICY.catalog, policy=POLICY.policy) == team_usage(
        after, catalog=POLICY.catalog, policy=POLICY.policy
    )
    memo = ChargeMemo()
    assert memo.usage(POLICY, before) == memo.usage(POLICY, after)  # the memo keys on nothing editable either
    for pod, edit in zip(pods, edited, strict=True):
        assert charge(pod, pods) == charge(edit, edited)


# ---- the bind gate (accel.quota.bind rule 1) ------------------------------------------------------


def node(name: str) -> Any:
    return next(n for n in DEFAULT_NODES if n.name == name)


def test_the_bind_gate_checks_any_pod_whose_node_type_differs_from_its_charge() -> None:
    pod = admitted("nlp", "a100-80gb", name="a")
    view = parse_pod(annotate(pod, **{TYPE_ANNOTATION: H100}))
    inventory = make_inventory([pod])
    assert (
        gated_team(view, inventory, POLICY.policy, POLICY.catalog) is None
    )  # typed: the filter does not gate it
    assert (
        bind_check(view, node("a100-1"), inventory, POLICY.policy, POLICY.catalog) is None
    )  # charged as A100
    gate = bind_check(view, node("h100-1"), inventory, POLICY.policy, POLICY.catalog)
    assert gate is not None and gate[1] == A100
    team = gate[0]
    entry = conversion(
        team, view, node("h100-1"), inventory, POLICY.catalog, now=0.0, ttl=60.0, charged=gate[1]
    )
    assert (entry.type, entry.amount, entry.undecided) == (
        H100,
        Fraction(2),
        Fraction(0),
    )  # A100 stays charged
    full = {"nlp": {H100: Fraction(15)}}  # nlp's H100 line is 16: 15 in use + 2 would overrun it
    refused = decide_conversion(Ledger(), entry, team=team, base=full, visible=frozenset(), now=0.0)
    assert refused.ledger is None and refused.excess and refused.excess[0].key == H100
    room = decide_conversion(
        Ledger(), entry, team=team, base={"nlp": {H100: Fraction(14)}}, visible=frozenset(), now=0.0
    )
    assert room.ledger is not None and not room.excess


@pytest.mark.parametrize("forged", [H100, H200, ""])
def test_an_undecided_pod_is_still_converted_whatever_its_annotations(forged: str) -> None:
    pod = admitted("nlp", "large-any", name="m")
    view = parse_pod(annotate(pod, **{TYPE_ANNOTATION: forged}))
    inventory = make_inventory([pod])
    assert gated_team(view, inventory, POLICY.policy, POLICY.catalog) is not None
    gate = bind_check(view, node("h100-1"), inventory, POLICY.policy, POLICY.catalog)
    assert gate is not None and gate[1] == UNDECIDED_TYPE


# ---- the price (accel.quota.chargeback rule 5, the extender's bind prices) -------------------------


def priced(pod: dict[str, Any], node_name: str) -> Any:
    from accel.quota.chargeback import priced_profile

    view = parse_pod(pod)
    accel_type = next(n for n in DEFAULT_NODES if n.name == node_name).accelerator_type or ""
    inventory = make_inventory([pod])
    profile = priced_profile(view, accel_type, view.namespace, POLICY.policy, inventory, POLICY.catalog)
    return gpu_hour_price(profile, accel_type, POLICY.catalog)


@pytest.mark.parametrize("forged", ["gpu-any", "large-any", "notebook-shared", "no-such-profile", None])
def test_an_edited_profile_never_lowers_the_price(forged: str | None) -> None:
    pod = admitted("vision", "legacy-v100", name="v")  # costPerGpuHour 0.90 in the example policy
    honest = priced(pod, "v100-1")
    assert honest == POLICY.policy.profile("legacy-v100").cost_per_gpu_hour  # type: ignore[union-attr]
    edit = copy.deepcopy(pod)
    if forged is None:
        del edit["metadata"]["annotations"][PROFILE_ANNOTATION]
    else:
        edit["metadata"]["annotations"][PROFILE_ANNOTATION] = forged
    price = priced(edit, "v100-1")
    assert price is not None and honest is not None and price >= honest


def test_a_generic_pod_of_an_unrestricted_team_keeps_its_catalog_price() -> None:
    pod = admitted("platform", "gpu-any", name="g")  # platform: only a "*" quota, no allowed types
    assert parse_pod(pod).required_terms is None
    assert priced(pod, "a100-1") == gpu_hour_price(None, A100, POLICY.catalog)
