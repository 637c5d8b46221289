"""Governance through the real control plane (issue 14 section 1, issue 21 pod authors).

- A GPU pod that names no profile, in a team restricted to A100, gets the policy's default
  profile narrowed to A100 and accel's scheduler, and binds to the A100 node, never the H100 one.
- With no default the team may use, it is denied, listing the profiles it may use.
- In a namespace without the team label, a pod's own `team` label does not make it that team's.
- Annotations only accel may write are overwritten or removed as the API server stores the pod.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tests.e2e import cluster
from tests.e2e.conftest import delete_namespace, ensure_default_service_account
from tests.e2e.kubectl import KubectlError, wait_until

TYPE_ANNOTATION = "accelerator.opendatahub.io/type"


def _in(namespace: str, pod: cluster.Obj) -> cluster.Obj:
    pod["metadata"]["namespace"] = namespace
    return pod


def _required_values(pod: cluster.Obj) -> set[str]:
    required = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return {
        v
        for term in required["nodeSelectorTerms"]
        for e in term.get("matchExpressions", [])
        for v in e.get("values", [])
    }


def _bound(e2e: cluster.E2ECluster, ns: str, name: str) -> cluster.Obj | None:
    pod = e2e.kubectl.get("pod", name, namespace=ns)
    return pod if pod["spec"].get("nodeName") else None


@pytest.fixture
def unlabelled_namespace(e2e: cluster.E2ECluster) -> Iterator[str]:
    name = f"e2e-nolabel-{uuid.uuid4().hex[:6]}"
    e2e.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    ensure_default_service_account(e2e, name)
    yield name
    delete_namespace(e2e, name)


def test_no_profile_gpu_pod_in_a_restricted_team_is_governed(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-govern")
    pod = e2e.kubectl.create(_in(ns, cluster.gpu_pod("plain", team="e2e-govern", gpus=2)))
    notes = pod["metadata"]["annotations"]
    assert notes["accel.dev/profile"] == "gpu-any" and notes["accel.dev/team"] == "e2e-govern"
    assert pod["spec"]["schedulerName"] == "accel-scheduler"
    values = _required_values(pod)
    assert "NVIDIA-A100-SXM4-80GB" in values and not any("H100" in v for v in values), values
    if not e2e.scheduler_running or "nvidia-a100-80gb" not in e2e.gpu_nodes:
        pytest.skip("accel-scheduler is not running here: admission checked, binding not")
    bound = wait_until(partial(_bound, e2e, ns, "plain"), timeout_s=60, what="pod plain bound")
    assert bound["spec"]["nodeName"] == e2e.gpu_nodes["nvidia-a100-80gb"]


def test_no_profile_gpu_pod_without_a_usable_default_is_denied(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-govern-strict")
    with pytest.raises(KubectlError) as denied:
        e2e.kubectl.create(_in(ns, cluster.gpu_pod("plain", team="e2e-govern-strict", gpus=1)))
    message = denied.value.stderr
    assert "denied the request" in message and "names no hardware profile" in message, message
    assert 'team "e2e-govern-strict" may use: "a100-only"' in message and "accel.dev/profile" in message, (
        message
    )


def test_pod_team_label_in_an_unlabelled_namespace_does_not_count(
    e2e: cluster.E2ECluster, unlabelled_namespace: str
) -> None:
    with pytest.raises(KubectlError) as denied:
        e2e.kubectl.create(
            _in(unlabelled_namespace, cluster.gpu_pod("p", team="e2e-govern", gpus=1, profile="a100-only"))
        )
    message = denied.value.stderr
    assert "has no team label" in message and 'label team="e2e-govern" does not count' in message, message
    assert not e2e.kubectl.get("pods", namespace=unlabelled_namespace).get("items"), (
        "nothing was created or charged"
    )


def test_forged_annotations_are_overwritten_or_removed(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-govern")
    pod = cluster.gpu_pod("forged", team="e2e-govern", gpus=1, profile="a100-only")
    pod["metadata"]["annotations"].update(
        {
            "accel.dev/team": "e2e-sched",
            TYPE_ANNOTATION: "nvidia-h100-80gb",
            "accel.dev/cost-per-hour": "0.01",
            "accel.dev/gpu-hour-price": "0.01",
            "accel.dev/devices": "nvidia.com/gpu=0",
            "accel.dev/placement": "x",
            "accel.dev/job": "j1",
        }
    )
    stored = e2e.kubectl.create(_in(ns, pod))["metadata"]["annotations"]
    assert stored["accel.dev/team"] == "e2e-govern" and stored[TYPE_ANNOTATION] == "nvidia-a100-80gb"
    assert stored["accel.dev/cost-per-hour"] == stored["accel.dev/gpu-hour-price"] != "0.01"
    assert "accel.dev/devices" not in stored and "accel.dev/placement" not in stored
    assert stored["accel.dev/job"] == "j1"
