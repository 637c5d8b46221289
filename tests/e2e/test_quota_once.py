"""Quota through the real API server (issue 14 §2-3, issue 21 forged reservation): each pod counted
once, freed at once, a later admission step's rejection freed within seconds, and the type fixed
at bind where the capacity is. Each case has its own team in `cluster.e2e_policy()`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError, wait_until


def _ledger_ids(e2e: cluster.E2ECluster, namespace: str) -> set[str]:
    """Ids of the ledger entries of pods in `namespace` (the ledger is shared by every team)."""
    found = e2e.kubectl.get("configmap", "accel-quota-ledger", namespace=cluster.NS)
    entries = json.loads((found.get("data") or {}).get("ledger.json") or '{"reservations": {}}')[
        "reservations"
    ]
    return {rid for rid, entry in entries.items() if entry.get("namespace") == namespace}


def _create(e2e: cluster.E2ECluster, ns: str, name: str, *, team: str, gpus: int, profile: str,
            annotations: dict[str, str] | None = None) -> dict | None:
    pod = cluster.gpu_pod(name, team=team, gpus=gpus, profile=profile)
    pod["metadata"]["namespace"] = ns
    pod["metadata"]["annotations"].update(annotations or {})
    try:
        return e2e.kubectl.create(pod)
    except KubectlError:
        return None


def test_a_forged_reservation_burst_stays_within_quota(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-forged")
    created = [_create(e2e, ns, f"forged-{i}", team="e2e-forged", gpus=1, profile="a100-only",
                       annotations={"accel.dev/reservation": "fixed-id"}) for i in range(6)]
    pods = [p for p in created if p is not None]
    assert len(pods) == 2
    # the validating webhook saw the API server's uid: the ledger is keyed to the real pods
    assert "fixed-id" not in _ledger_ids(e2e, ns)
    assert _ledger_ids(e2e, ns) <= {p["metadata"]["uid"] for p in pods} | {
        f"bound/{p['metadata']['uid']}" for p in pods
    }
    assert all("accel.dev/reservation" not in (p["metadata"].get("annotations") or {}) for p in pods)


def test_delete_then_create_at_a_full_quota(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-recreate")
    for i in range(2):
        assert _create(e2e, ns, f"full-{i}", team="e2e-recreate", gpus=1, profile="a100-only") is not None
    assert _create(e2e, ns, "over", team="e2e-recreate", gpus=1, profile="a100-only") is None
    e2e.kubectl.run("delete", "pod", "full-0", "-n", ns, "--grace-period=0", "--force", "--wait=true")
    # freed as soon as the webhook's watch shows the delete (no TTL): poll only for the watch
    wait_until(
        lambda: _create(e2e, ns, "again", team="e2e-recreate", gpus=1, profile="a100-only"),
        timeout_s=10,
        what="a create right after a delete at full quota",
    )


def test_a_resource_quota_rejection_frees_its_reservation_within_seconds(
        e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]) -> None:
    ns = team_namespace("e2e-rquota")
    e2e.kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "one-gpu", "namespace": ns},
            "spec": {"hard": {"requests.nvidia.com/gpu": "1"}},
        }
    )
    assert _create(e2e, ns, "first", team="e2e-rquota", gpus=1, profile="a100-only") is not None
    pod = cluster.gpu_pod("second", team="e2e-rquota", gpus=1, profile="a100-only")
    pod["metadata"]["namespace"] = ns
    with pytest.raises(KubectlError) as rejected:  # accel admits (1 of 2), the ResourceQuota refuses it
        e2e.kubectl.create(pod)
    assert "exceeded quota" in rejected.value.stderr
    e2e.kubectl.delete("resourcequota", "one-gpu", namespace=ns, wait=True)
    # the rejected pod's reservation is released after the grace, checked with the API server
    wait_until(
        lambda: _create(e2e, ns, "third", team="e2e-rquota", gpus=1, profile="a100-only"),
        timeout_s=30,
        what="a create after the ResourceQuota rejection",
    )


def test_fallback_when_the_first_type_is_free_only_in_fragments(
        e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]) -> None:
    if not e2e.scheduler_running:
        pytest.skip("needs kube-scheduler with the extender")
    ns = team_namespace("e2e-fallback")
    assert _create(e2e, ns, "filler", team="e2e-fallback", gpus=7, profile="h100-only") is not None
    wait_until(lambda: e2e.kubectl.get("pod", "filler", namespace=ns)["spec"].get("nodeName"), timeout_s=60,
               what="the H100 filler bound")
    forged = {"accel.dev/cost-per-hour": "0.01", "accel.dev/gpu-hour-price": "0.01"}
    created = _create(
        e2e, ns, "wants-two", team="e2e-fallback", gpus=2, profile="h100-first", annotations=forged
    )
    assert created is not None and "accelerator.opendatahub.io/type" not in created["metadata"]["annotations"]
    node = wait_until(
        lambda: e2e.kubectl.get("pod", "wants-two", namespace=ns)["spec"].get("nodeName"),
        timeout_s=60,
        what="the h100-first pod bound",
    )
    assert node == e2e.gpu_nodes["nvidia-a100-80gb"]  # 1 H100 free only: the next type, now
    notes = e2e.kubectl.get("pod", "wants-two", namespace=ns)["metadata"]["annotations"]
    assert notes["accelerator.opendatahub.io/type"] == "nvidia-a100-80gb"
    assert notes["accel.dev/cost-per-hour"] != "0.01" and notes["accel.dev/gpu-hour-price"] != "0.01"
