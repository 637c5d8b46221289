"""Admission end to end: pods are mutated as their profile says; over-quota pods are denied."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError

TYPE_ANNOTATION = "accelerator.opendatahub.io/type"


def _in(namespace: str, pod: cluster.Obj) -> cluster.Obj:
    pod["metadata"]["namespace"] = namespace
    return pod


def _affinity_values(pod: cluster.Obj) -> set[str]:
    required = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return {
        v
        for term in required["nodeSelectorTerms"]
        for e in term.get("matchExpressions", [])
        for v in e.get("values", [])
    }


def test_profile_pod_gets_type_affinity_scheduler_and_annotations(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-mutate")
    pod = e2e.kubectl.create(
        _in(ns, cluster.gpu_pod("p", team="e2e-mutate", gpus=2, profile="h100-first")), dry_run=True
    )
    values = _affinity_values(pod)
    assert "NVIDIA-H100-80GB-HBM3" in values and "NVIDIA-A100-SXM4-80GB" in values
    assert pod["spec"]["schedulerName"] == "accel-scheduler"
    assert pod["metadata"]["annotations"]["accel.dev/profile"] == "h100-first"
    assert TYPE_ANNOTATION not in pod["metadata"]["annotations"], (
        "two types possible: the type is set at bind"
    )
    preferred = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    weights = {
        v: t["weight"] for t in preferred for e in t["preference"]["matchExpressions"] for v in e["values"]
    }
    assert weights["NVIDIA-H100-80GB-HBM3"] > weights["NVIDIA-A100-SXM4-80GB"]


def test_single_type_profile_sets_the_type_and_price_at_admission(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-mutate")
    pod = e2e.kubectl.create(
        _in(ns, cluster.gpu_pod("p", team="e2e-mutate", gpus=1, profile="a100-only")), dry_run=True
    )
    annotations = pod["metadata"]["annotations"]
    assert annotations[TYPE_ANNOTATION] == "nvidia-a100-80gb"
    assert float(annotations["accel.dev/gpu-hour-price"]) == pytest.approx(2.0)


def test_unknown_profile_is_denied_with_the_valid_ones(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-mutate")
    with pytest.raises(KubectlError) as denied:
        e2e.kubectl.create(
            _in(ns, cluster.gpu_pod("p", team="e2e-mutate", gpus=1, profile="no-such-profile"))
        )
    assert "accel.dev" in denied.value.stderr and "denied the request" in denied.value.stderr
    assert "a100-only" in denied.value.stderr, "the denial lists the valid profiles"


def test_over_quota_pod_is_denied_with_a_clear_message(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-quota")
    e2e.kubectl.create(_in(ns, cluster.gpu_pod("fits", team="e2e-quota", gpus=2, profile="h100-first")))
    with pytest.raises(KubectlError) as denied:
        e2e.kubectl.create(_in(ns, cluster.gpu_pod("over", team="e2e-quota", gpus=1, profile="h100-first")))
    message = denied.value.stderr
    assert 'admission webhook "validate.pods.accel.dev" denied the request' in message
    assert "quota" in message.lower() and "e2e-quota" in message and "2" in message


def test_dry_run_does_not_reserve_quota(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-dryrun")  # its own team: no other test's pods count against it
    for _ in range(3):  # three dry runs of the whole quota would exhaust it if they reserved
        e2e.kubectl.create(
            _in(ns, cluster.gpu_pod("dry", team="e2e-dryrun", gpus=2, profile="h100-first")), dry_run=True
        )
    e2e.kubectl.create(_in(ns, cluster.gpu_pod("real", team="e2e-dryrun", gpus=2, profile="h100-first")))


def test_pods_without_accelerators_pass_untouched(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    """With matchConditions they are never sent; without (Kubernetes < 1.28, where the harness
    strips them) they reach the webhook, which must let them through unchanged even when they
    break rules that GPU pods must follow (here: no `team` label, which the policy requires)."""
    ns = team_namespace("e2e-mutate")
    plain = _in(ns, cluster.gpu_pod("cpu", team="e2e-mutate", gpus=0))
    unlabelled = _in(ns, cluster.gpu_pod("cpu-no-team", team="e2e-mutate", gpus=0))
    del unlabelled["metadata"]["labels"]
    for sent in (plain, unlabelled):
        pod = e2e.kubectl.create(sent)
        assert not any(k.startswith("accel.dev/") for k in pod["metadata"].get("annotations") or {})
        assert pod["spec"]["schedulerName"] == "default-scheduler"
        assert "affinity" not in pod["spec"] and "tolerations" not in sent["spec"]
        assert pod["spec"]["containers"][0]["resources"] == sent["spec"]["containers"][0]["resources"]
    if e2e.servers is not None and e2e.servers.match_conditions_stripped:
        webhooks = e2e.kubectl.get("validatingwebhookconfiguration", "accel-validate")["webhooks"]
        assert not any(w.get("matchConditions") for w in webhooks), "these pods did reach the webhook"


def test_a_cpu_pod_loses_the_accel_annotations_its_author_wrote(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    """accel.admission.plan rule 8 for pods asking for no accelerator (their matchCondition sends
    them when they carry accel.dev/* keys): a forged cost, team or type does not reach the API
    server, where FinOps tools would read it; the author's job key and other vendors' keys stay."""
    ns = team_namespace("e2e-mutate")
    sent = _in(ns, cluster.gpu_pod("cpu-forged", team="e2e-mutate", gpus=0))
    forged = {"accel.dev/cost-per-hour": "0.01", "accel.dev/team": "e2e-quota",
              "accelerator.opendatahub.io/type": "nvidia-h100-80gb"}
    kept = {"accel.dev/job": "etl", "example.com/owner": "data-eng"}
    sent["metadata"]["annotations"] = {**forged, **kept}
    pod = e2e.kubectl.create(sent)
    annotations = pod["metadata"].get("annotations") or {}
    assert not set(forged) & set(annotations), annotations
    assert {k: annotations.get(k) for k in kept} == kept
    assert pod["spec"]["schedulerName"] == "default-scheduler"
