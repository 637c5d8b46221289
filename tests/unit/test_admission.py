"""accel.admission / affinity / webhook Admitter: rules the golden cases do not isolate."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
import yaml

from accel.admission.affinity import plan_affinity
from accel.admission.context import build_context
from accel.admission.plan import apply_mode, mutate
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import Mode, Profile
from accel.policy.pricing import usd
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import (
    DEFAULT_NODES,
    POLICY_DIR,
    example_policy,
    gpu_pod,
    make_context,
    make_inventory,
    node_model,
    review,
)
from webhook.app import ADMITTER, make_app
from webhook.review import parse_review

MIXED_PROFILE = [
    {"name": "mixed", "accelerators": [{"type": "nvidia-h100-80gb"}, {"type": "amd-mi300x-192gb"}]}
]


def policy_with_mixed_profile() -> Any:
    """A profile whose types carry two node label keys. `parse_policy` refuses such a mixed-vendor
    profile (accel.policy.loading rule 4), but the affinity planner must still AND every key term
    correctly, so these tests build the policy object directly."""
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    files["teams.yaml"] = yaml.safe_dump({"teams": [{"name": "nlp", "quota": {"*": 100}}]})
    parsed = parse_policy(files, load_builtin_catalog())
    mixed = tuple(Profile.model_validate(item) for item in MIXED_PROFILE)
    policy = parsed.policy.model_copy(update={"profiles": (*parsed.policy.profiles, *mixed)})
    return parsed.model_copy(update={"policy": policy})


def test_two_label_keys_give_one_term_per_key_anded_with_every_user_term() -> None:
    ctx = build_context(policy_with_mixed_profile(), make_inventory())
    pod = gpu_pod(profile="mixed")
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    decision = mutate(pod, namespace="nlp", ctx=ctx)
    patched = jsonpatch.apply_patch(pod, list(decision.ops))
    terms = patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [(t["matchExpressions"][0]["values"], t["matchExpressions"][1]["key"]) for t in terms] == [
        (["a"], "nvidia.com/gpu.product"), (["a"], "amd.com/gpu.product-name"),
        (["b"], "nvidia.com/gpu.product"), (["b"], "amd.com/gpu.product-name"),
    ]
    assert mutate(patched, namespace="nlp", ctx=ctx).ops == ()


def test_a_term_that_only_contradicts_some_keys_is_still_satisfiable() -> None:
    ctx = build_context(policy_with_mixed_profile(), make_inventory())
    profile = ctx.policy.profile("mixed")
    assert profile is not None
    selector = ctx.selector(profile, profile.types)
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["Tesla-T4"]}
                            ]
                        }
                    ]
                }
            }
        }
    }
    plan = plan_affinity(spec, selector)
    assert plan.conflict is None and plan.required_terms is not None and len(plan.required_terms) == 2


def test_observed_node_label_values_join_the_catalog_spellings() -> None:
    odd = node_model("a100-odd", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB-Custom")
    ctx = make_context(nodes=(*DEFAULT_NODES, odd))
    decision = mutate(gpu_pod(), namespace="nlp", ctx=ctx)
    patched = jsonpatch.apply_patch(gpu_pod(), list(decision.ops))
    values = patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    assert "NVIDIA-A100-SXM4-80GB-Custom" in values and "NVIDIA-A100-SXM4-80GB" in values


@pytest.mark.parametrize(
    ("amount", "text"),
    [(6.2, "6.20"), (0.8, "0.80"), (2, "2.00"), (0.255714285, "0.2557")],
    ids=["two-decimals", "leading-zero", "whole", "four-decimals-max"],
)
def test_usd_strings(amount: float, text: str) -> None:
    assert usd(amount) == text


def test_dry_run_mode_drops_the_patch_and_records_the_decision() -> None:
    decision = mutate(gpu_pod(), namespace="nlp", ctx=make_context())
    assert decision.ops
    shown = apply_mode(decision, Mode.DRY_RUN)
    assert shown.allowed and shown.ops == () and shown.audit["decision"] == "would-allow-mutated"


async def admitter(store: FakeCluster, **settings: Any) -> Any:
    state = ClusterState.static(example_policy(**settings), make_inventory())
    return make_app(state, metrics=Metrics(), ledger_store=store, replica_id="t")[ADMITTER]


@pytest.mark.parametrize(
    "pod",
    [gpu_pod(namespace="kube-system"), gpu_pod(profile=None, gpus=None)],
    ids=["excluded-namespace", "no-accelerator"],
)
async def test_fast_path_does_no_ledger_io(pod: dict[str, Any]) -> None:
    store = FakeCluster()
    adm = await admitter(store)
    request = parse_review(review(pod)).request
    assert (await adm.mutate(request)).allowed and (await adm.validate(request)).allowed
    assert not store.calls


async def test_warn_mode_never_writes_the_ledger() -> None:
    store = FakeCluster()
    adm = await admitter(store, mode="warn")
    pod = gpu_pod(gpus="2")
    mutated = await adm.mutate(parse_review(review(pod)).request)
    # The webhook's decisions carry the patch, not the patched pod (MutationMemo): apply it.
    decision = await adm.validate(parse_review(review(jsonpatch.apply_patch(pod, list(mutated.ops)))).request)
    assert decision.allowed
    assert not [c for c in store.calls if c[0] in ("create", "update")]


async def test_decisions_and_quota_gauges_are_exported() -> None:
    store = FakeCluster()
    state = ClusterState.static(example_policy(), make_inventory())
    metrics = Metrics()
    adm = make_app(state, metrics=metrics, ledger_store=store, replica_id="t")[ADMITTER]
    pod = gpu_pod(gpus="2")
    mutated = await adm.mutate(parse_review(review(pod)).request)
    await adm.validate(parse_review(review(jsonpatch.apply_patch(pod, list(mutated.ops)))).request)
    text = metrics.render().decode()
    series = 'decision="allowed",profile="a100-80gb",reason="allowed",team="nlp"'
    assert f"accel_admission_decisions_total{{{series}}} 1.0" in text
    assert 'accel_quota_used_gpus{team="nlp",type="nvidia-a100-80gb"} 2.0' in text
    assert 'accel_quota_limit_gpus{team="nlp",type="*"} 40.0' in text
