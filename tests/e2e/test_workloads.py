"""Pods made by controllers (ReplicaSet, Job) go through admission, mutation and the extender's bind
exactly like hand-made ones; a denial reaches the ReplicaSet as a `FailedCreate` event."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError, wait_until

TYPE_ANNOTATION = "accelerator.opendatahub.io/type"
DENIED = 'admission webhook "validate.pods.accel.dev" denied the request: '


def _pods(e2e: cluster.E2ECluster, ns: str, app: str) -> list[cluster.Obj]:
    items: list[cluster.Obj] = e2e.kubectl.get("pods", namespace=ns)["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("app") == app]


def _all_bound(e2e: cluster.E2ECluster, ns: str, app: str, count: int) -> list[cluster.Obj] | None:
    pods = _pods(e2e, ns, app)
    return pods if len(pods) == count and all(p["spec"].get("nodeName") for p in pods) else None


def _require_controllers_and_scheduler(e2e: cluster.E2ECluster) -> None:
    if not e2e.scheduler_running:
        pytest.skip("accel-scheduler is not running (out-of-cluster mode without kube-scheduler)")
    if e2e.control_plane is not None and e2e.control_plane.controller_manager is None:
        pytest.skip("no kube-controller-manager in KUBEBUILDER_ASSETS: nothing creates the pods")


def _assert_mutated_and_bound(pods: list[cluster.Obj], *, profile: str, node: str, gpu_type: str) -> None:
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["metadata"].get("generateName"), f"{name}: made by a controller"
        annotations = pod["metadata"]["annotations"]
        assert annotations["accel.dev/profile"] == profile
        assert pod["spec"]["schedulerName"] == "accel-scheduler", f"{name}: mutated by the webhook"
        assert pod["spec"]["nodeName"] == node, f"{name}: bound to the {gpu_type} node"
        assert annotations[TYPE_ANNOTATION] == gpu_type, f"{name}: the extender's bind wrote the type"


def test_deployment_pods_are_admitted_mutated_and_bound_by_the_extender(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    _require_controllers_and_scheduler(e2e)
    ns = team_namespace("e2e-workload")
    template = cluster.gpu_pod_template(team="e2e-workload", gpus=2, profile="h100-only", app="trainer")
    e2e.kubectl.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "trainer", "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "trainer"}}, "template": template},
        }
    )
    pods = wait_until(lambda: _all_bound(e2e, ns, "trainer", 2), timeout_s=90, what="2 Deployment pods bound")
    _assert_mutated_and_bound(pods, profile="h100-only", node=e2e.gpu_nodes["nvidia-h100-80gb"],
                              gpu_type="nvidia-h100-80gb")  # fmt: skip


def test_job_pods_are_admitted_mutated_and_bound_by_the_extender(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    _require_controllers_and_scheduler(e2e)
    ns = team_namespace("e2e-workload")
    template = cluster.gpu_pod_template(team="e2e-workload", gpus=1, profile="a100-only", app="batch")
    template["spec"]["restartPolicy"] = "Never"
    e2e.kubectl.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "batch", "namespace": ns},
            "spec": {"completions": 3, "parallelism": 3, "backoffLimit": 0, "template": template},
        }
    )
    pods = wait_until(lambda: _all_bound(e2e, ns, "batch", 3), timeout_s=90, what="3 Job pods bound")
    _assert_mutated_and_bound(pods, profile="a100-only", node=e2e.gpu_nodes["nvidia-a100-80gb"],
                              gpu_type="nvidia-a100-80gb")  # fmt: skip
    for pod in pods:
        assert float(pod["metadata"]["annotations"]["accel.dev/gpu-hour-price"]) == pytest.approx(2.0)


def test_over_quota_deployment_shows_the_full_denial_on_its_replicaset(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    if e2e.control_plane is not None and e2e.control_plane.controller_manager is None:
        pytest.skip("no kube-controller-manager in KUBEBUILDER_ASSETS: nothing creates the pods")
    ns = team_namespace("e2e-overquota")  # quota: 2 GPUs in all
    template = cluster.gpu_pod_template(team="e2e-overquota", gpus=1, profile="gpu-any", app="greedy")
    e2e.kubectl.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "greedy", "namespace": ns},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "greedy"}}, "template": template},
        }
    )
    wait_until(lambda: len(_pods(e2e, ns, "greedy")) == 2, timeout_s=60, what="2 of 3 pods admitted")

    # What the webhook says about one more such pod now, word for word, as kubectl shows it.
    probe = cluster.gpu_pod("probe", team="e2e-overquota", gpus=1, profile="gpu-any")
    probe["metadata"]["namespace"] = ns
    with pytest.raises(KubectlError) as denied:
        e2e.kubectl.create(probe, dry_run=True)
    assert DENIED in denied.value.stderr, denied.value.stderr
    reason = denied.value.stderr.split(DENIED, 1)[1].strip()
    assert 'team "e2e-overquota"' in reason and "quota" in reason, reason

    def failed_create() -> list[str]:
        events = e2e.kubectl.get("events", namespace=ns)["items"]
        return [
            ev["message"]
            for ev in events
            if ev.get("reason") == "FailedCreate" and ev["involvedObject"].get("kind") == "ReplicaSet"
        ]

    messages = wait_until(failed_create, timeout_s=60, what="FailedCreate event on the ReplicaSet")
    assert any(DENIED + reason in message for message in messages), (reason, messages)
    assert len(_pods(e2e, ns, "greedy")) == 2, "the third replica was never admitted"
