"""Kueue: queued pods are Kueue's to book (never charged or denied on accel quota); the export."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
import yaml

from accel.admission.plan import mutate
from accel.admission.validate import decide_quota, finish_validation, plan_validation
from accel.capacity.inventory import team_usage
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.kueue import QUEUE_LABEL
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from accel.quota.kueue_export import export_objects
from accel.quota.ledger import Ledger
from kube.testing import make_hardware_profile
from tests.builders import POLICY_DIR, example_policy, gpu_pod, make_context, make_inventory
from tests.unit.crd_schema import load_schema, validate

SCHEMAS = {
    "ResourceFlavor": load_schema("kueue.x-k8s.io_resourceflavors.yaml", "v1beta1"),
    "ClusterQueue": load_schema("kueue.x-k8s.io_clusterqueues.yaml", "v1beta1"),
    "LocalQueue": load_schema("kueue.x-k8s.io_localqueues.yaml", "v1beta1"),
}


def admit(pod: dict[str, Any], ctx: Any) -> tuple[Any, Any]:
    mutated = mutate(pod, namespace=pod["metadata"]["namespace"], ctx=ctx)
    assert mutated.allowed, mutated.finding
    patched = jsonpatch.apply_patch(pod, list(mutated.ops)) if mutated.ops else pod
    plan = plan_validation(
        patched, namespace=pod["metadata"]["namespace"], ctx=ctx, request_uid="r1", now=0.0, dry_run=False
    )
    if plan.quota is None:
        return plan, plan.decision
    return plan, finish_validation(plan, decide_quota(plan.quota, Ledger(), ctx=ctx, now=0.0), ctx)


def full_a100_quota_of_vision() -> list[dict[str, Any]]:
    """vision's whole nvidia-a100-80gb quota (12) in use by bound pods."""
    return [gpu_pod(namespace="vision", name=f"busy-{i}", node="a100-1", gpus="1") for i in range(8)] + [
        gpu_pod(namespace="vision", name=f"busy-b{i}", node="a100-2", gpus="1") for i in range(4)
    ]


def vision_policy(*, kueue_managed: bool) -> ParsedPolicy:
    """The example policy, with team vision marked Kueue-managed (teams.yaml `kueueManaged`) or not."""
    teams = yaml.safe_load((POLICY_DIR / "teams.yaml").read_text())["teams"]
    for team in teams:
        if team["name"] == "vision":
            team["kueueManaged"] = kueue_managed
    return example_policy(teams=teams)


def full_vision_context(*, kueue_managed: bool) -> Any:
    from tests.builders import DEFAULT_NODES, node_model

    nodes = (*DEFAULT_NODES, node_model("a100-2", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB"))
    return make_context(
        full_a100_quota_of_vision(), nodes=nodes, policy=vision_policy(kueue_managed=kueue_managed)
    )


def test_a_pod_with_the_queue_label_is_not_charged_nor_denied_when_accel_quota_is_full() -> None:
    ctx = full_vision_context(kueue_managed=True)
    _, plain = admit(gpu_pod(namespace="vision"), ctx)
    assert not plain.allowed and plain.reason == plain.finding.reason  # over accel quota: denied
    plan, queued = admit(gpu_pod(namespace="vision", labels={QUEUE_LABEL: "default"}), ctx)
    assert queued.allowed and plan.quota is None and queued.audit["quota"] == "kueue"


def test_the_queue_label_is_no_pass_around_quota_in_a_team_kueue_does_not_manage() -> None:
    # issue 21: the label is the author's; without Kueue gating the team's pods it would run them
    # free of any quota. A team the admin has not marked `kueueManaged` is charged as usual.
    ctx = full_vision_context(kueue_managed=False)
    plan, labelled = admit(gpu_pod(namespace="vision", labels={QUEUE_LABEL: "default"}), ctx)
    assert not labelled.allowed and labelled.reason == "quota-exceeded"
    assert plan.quota is not None


def test_queued_pods_are_not_in_accel_usage_and_still_get_affinity() -> None:
    running = [
        gpu_pod(namespace="vision", name="q", node="a100-1", gpus="4", labels={QUEUE_LABEL: "default"}),
        gpu_pod(namespace="vision", name="p", node="a100-1", gpus="2"),
    ]
    parsed = vision_policy(kueue_managed=True)
    usage = team_usage(make_inventory(running), catalog=parsed.catalog, policy=parsed.policy)
    assert usage["vision"]["nvidia-a100-80gb"] == 2
    unmanaged = vision_policy(kueue_managed=False)
    usage = team_usage(make_inventory(running), catalog=unmanaged.catalog, policy=unmanaged.policy)
    assert usage["vision"]["nvidia-a100-80gb"] == 6  # the label alone books nothing with Kueue
    mutated = mutate(
        gpu_pod(namespace="vision", labels={QUEUE_LABEL: "default"}),
        namespace="vision",
        ctx=make_context(policy=parsed),
    )
    assert any(op["path"].startswith("/spec/affinity") for op in (dict(o) for o in mutated.ops))


def queue_profile_policy(*, kueue_managed: bool) -> ParsedPolicy:
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    files["teams.yaml"] = (
        "teams:\n- name: vision\n  quota: {nvidia-a100-80gb: 0}\n"
        f"  kueueManaged: {str(kueue_managed).lower()}\n"
    )
    hwp = make_hardware_profile(
        "queued-a100", queue="default", annotations={"accel.dev/accelerator-types": "nvidia-a100-80gb"}
    )
    return parse_policy(files, load_builtin_catalog(), hardware_profiles=[hwp])


def test_a_queue_scheduled_hardware_profile_makes_its_pods_queued() -> None:
    ctx = make_context(policy=queue_profile_policy(kueue_managed=True))
    pod = gpu_pod(
        namespace="vision", profile=None, annotations={"opendatahub.io/hardware-profile-name": "queued-a100"}
    )
    plan, decision = admit(pod, ctx)
    assert decision.allowed and plan.quota is None and decision.profile == "queued-a100"
    # Kueue's pod integration gates a pod by the label, so the webhook writes the profile's LocalQueue.
    labels = dict(mutate(pod, namespace="vision", ctx=ctx).document["metadata"]["labels"])
    assert labels[QUEUE_LABEL] == "default"


def test_a_queue_scheduled_profile_in_a_team_kueue_does_not_manage_is_charged() -> None:
    ctx = make_context(policy=queue_profile_policy(kueue_managed=False))
    pod = gpu_pod(
        namespace="vision", profile=None, annotations={"opendatahub.io/hardware-profile-name": "queued-a100"}
    )
    plan, decision = admit(pod, ctx)
    assert not decision.allowed and plan.quota is not None


def test_export_is_valid_against_kueue_schemas_and_follows_the_policy() -> None:
    parsed = example_policy()
    inventory = make_inventory()
    result = export_objects(parsed.policy, parsed.catalog, inventory)
    problems = [
        f"{o['kind']} {o['metadata']['name']}: {p}"
        for o in result.objects
        for p in validate(o, SCHEMAS[o["kind"]])
    ]
    assert problems == []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in result.objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    flavors = {f["metadata"]["name"]: f["spec"]["nodeLabels"] for f in by_kind["ResourceFlavor"]}
    assert flavors["nvidia-h100-80gb"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert flavors["amd-mi300x-192gb"] == {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
    queues = {q["metadata"]["name"]: q["spec"] for q in by_kind["ClusterQueue"]}
    nlp = queues["nlp"]["resourceGroups"][0]
    # flavor order = preference order of nlp's profiles (premium-h200, then large-any's h200, h100, a100)
    assert [f["name"] for f in nlp["flavors"]][:3] == [
        "nvidia-h200-141gb",
        "nvidia-h100-80gb",
        "nvidia-a100-80gb",
    ]
    assert nlp["flavors"][1]["resources"] == [{"name": "nvidia.com/gpu", "nominalQuota": 16}]
    vision = {
        f["name"]: f["resources"][0]["nominalQuota"] for f in queues["vision"]["resourceGroups"][0]["flavors"]
    }
    assert vision == {"nvidia-a100-80gb": 12, "nvidia-l4-24gb": 2, "nvidia-v100-32gb": 8}
    assert queues["vision"]["namespaceSelector"] == {"matchLabels": {"team": "vision"}}
    local = {(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in by_kind["LocalQueue"]}
    assert ("nlp", "nlp") in local and ("vision", "vision") in local
    assert any("Cohort" in note for note in result.notes)


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        (
            {
                "apiVersion": "kueue.x-k8s.io/v1beta1",
                "kind": "ClusterQueue",
                "metadata": {"name": "x"},
                "spec": {
                    "resourceGroups": [
                        {
                            "coveredResources": ["nvidia.com/gpu"],
                            "flavors": [
                                {"name": "A_B", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 1}]}
                            ],
                        }
                    ]
                },
            },
            "does not match",
        ),
        (
            {
                "apiVersion": "kueue.x-k8s.io/v1beta1",
                "kind": "ClusterQueue",
                "metadata": {"name": "x"},
                "spec": {
                    "resourceGroups": [
                        {
                            "coveredResources": ["nvidia.com/gpu"],
                            "flavors": [{"name": "a", "resources": [{"name": "g"}]}],
                        }
                    ]
                },
            },
            "missing required field 'nominalQuota'",
        ),
        (
            {
                "apiVersion": "kueue.x-k8s.io/v1beta1",
                "kind": "ClusterQueue",
                "metadata": {"name": "x"},
                "spec": {"nominal": 1},
            },
            "unknown field",
        ),
    ],
    ids=["bad-flavor-name", "missing-quota", "unknown-field"],
)
def test_the_schema_check_catches_what_the_api_server_would_refuse(
    obj: dict[str, Any], fragment: str
) -> None:
    assert any(fragment in p for p in validate(obj, SCHEMAS["ClusterQueue"]))
