"""OpenDataHub HardwareProfiles, Kueue and chargeback on a real control plane (issue 19).

The public CRDs (tests/data/crds/, vendored with their source) are installed into the API server;
HardwareProfiles are created as the ODH dashboard would, and pods naming them with
`opendatahub.io/hardware-profile-name` must be mutated by them. Kueue objects from
`accel kueue export` must be accepted by the API server with Kueue's own schemas (CEL included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "data" / "crds"
HWP_NS = "e2e-odh-profiles"
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
HWP_KIND = "hardwareprofiles.infrastructure.opendatahub.io"


def install_crds(kubectl: Kubectl, *files: str) -> list[str]:
    names = []
    for file in files:
        crd = yaml.safe_load((CRDS / file).read_text())
        kubectl.apply(crd, server_side=True)
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_until(lambda n=name: any(c["type"] == "Established" and c["status"] == "True"
                                      for c in kubectl.get("crd", n).get("status", {}).get("conditions", [])),
                   timeout_s=30, what=f"CRD {name} established")
    return names


def hardware_profile(name: str, *, default: int = 1, selector: dict[str, str] | None = None,
                     annotations: dict[str, str] | None = None, queue: str | None = None) -> dict[str, Any]:
    scheduling: dict[str, Any] = (
        {"type": "Queue", "kueue": {"localQueueName": queue}}
        if queue
        else {
            "type": "Node",
            "node": {
                "nodeSelector": selector or {},
                "tolerations": [{"key": "e2e-odh", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }
    )
    return {
        "apiVersion": "infrastructure.opendatahub.io/v1alpha1",
        "kind": "HardwareProfile",
        "metadata": {"name": name, "namespace": HWP_NS, "annotations": annotations or {}},
        "spec": {
            "displayName": name.upper(),
            "enabled": True,
            "scheduling": scheduling,
            "identifiers": [
                {
                    "identifier": "cpu",
                    "displayName": "CPU",
                    "resourceType": "CPU",
                    "minCount": 1,
                    "defaultCount": 1,
                },
                {
                    "identifier": "nvidia.com/gpu",
                    "displayName": "GPU",
                    "resourceType": "Accelerator",
                    "minCount": 1,
                    "defaultCount": default,
                    "maxCount": 4,
                },
            ],
        },
    }


def odh_pod(name: str, *, team: str, namespace: str, profile: str, gpus: int = 0,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    pod = cluster.gpu_pod(name, team=team, gpus=gpus)
    pod["metadata"]["namespace"] = namespace
    pod["metadata"]["annotations"] = {"opendatahub.io/hardware-profile-name": profile,
                                      "opendatahub.io/hardware-profile-namespace": HWP_NS}
    pod["metadata"]["labels"].update(labels or {})
    return pod


@pytest.fixture(scope="module")
def odh(e2e: cluster.E2ECluster) -> Iterator[Kubectl]:
    kubectl = e2e.kubectl
    crds = install_crds(kubectl, "infrastructure.opendatahub.io_hardwareprofiles.yaml")
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HWP_NS}})
    try:
        yield kubectl
    finally:
        cluster.delete_quietly(kubectl, "namespace", HWP_NS)
        for name in crds:
            cluster.delete_quietly(kubectl, "crd", name)


def test_a_hardware_profile_cr_mutates_the_pods_that_name_it(
        odh: Kubectl, team_namespace: Callable[[str], str]) -> None:
    ns = team_namespace("e2e-odh")
    odh.create(hardware_profile("odh-a100", default=2, selector=A100))
    probe = odh_pod("p", team="e2e-odh", namespace=ns, profile="odh-a100")

    def mutated() -> dict[str, Any] | None:
        pod = odh.create(probe, dry_run=True)
        return pod if pod["metadata"].get("annotations", {}).get("accel.dev/profile") == "odh-a100" else None

    pod = wait_until(mutated, timeout_s=60, what="the webhook knows HardwareProfile odh-a100")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"  # defaultCount of the Accelerator identifier
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    values = {
        v
        for t in terms
        for e in t["matchExpressions"]
        if e["key"] == "nvidia.com/gpu.product"
        for v in e["values"]
    }
    assert "NVIDIA-A100-SXM4-80GB" in values and not any("H100" in v for v in values)
    assert {"key": "e2e-odh", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]

    notes = wait_until(
        lambda: (
            (o := odh.get(HWP_KIND, "odh-a100", namespace=HWP_NS))["metadata"]
            .get("annotations", {})
            .get("accel.dev/detected-accelerator-types")
            and o["metadata"]["annotations"]
        ),
        timeout_s=90,
        what="accel's annotations on the HardwareProfile",
    )
    assert notes["accel.dev/detected-accelerator-types"] == "nvidia-a100-80gb"
    assert json.loads(notes["accel.dev/availability"])["totalGpus"] >= 8


def test_the_api_server_prunes_status_fields_so_accel_uses_annotations(odh: Kubectl) -> None:
    """Why annotations: the published CRD's status has no schema, a field written there is dropped."""
    odh.create(hardware_profile("odh-status-probe", selector=A100))
    odh.run("patch", HWP_KIND, "odh-status-probe", "-n", HWP_NS, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"detectedTypes": ["nvidia-a100-80gb"], "available": True}}))
    stored = odh.get(HWP_KIND, "odh-status-probe", namespace=HWP_NS)
    assert "detectedTypes" not in (stored.get("status") or {}) and "available" not in (
        stored.get("status") or {}
    )
    odh.delete(HWP_KIND, "odh-status-probe", namespace=HWP_NS)


def test_a_name_clash_with_the_configmap_is_refused_with_an_event_and_the_policy_stays(
        odh: Kubectl, team_namespace: Callable[[str], str]) -> None:
    ns = team_namespace("e2e-odh")
    odh.create(hardware_profile("a100-only", selector=A100))  # profiles.yaml has a100-only too
    event = wait_until(
        lambda: next(
            (
                e
                for e in odh.get("events", namespace=HWP_NS)["items"]
                if e["reason"] == "PolicyRejected" and e["involvedObject"]["name"] == "a100-only"
            ),
            None,
        ),
        timeout_s=60,
        what="PolicyRejected event on the clashing HardwareProfile",
    )
    assert (
        "profiles.yaml profiles[" in event["message"]
        and "HardwareProfile e2e-odh-profiles/a100-only" in event["message"]
    )
    pod = odh.create(odh_pod("q", team="e2e-odh", namespace=ns, profile="a100-only"), dry_run=True)
    assert (
        pod["metadata"]["annotations"]["accel.dev/profile"] == "a100-only"
    )  # last good policy still in force
    odh.delete(HWP_KIND, "a100-only", namespace=HWP_NS)


def test_a_kueue_pod_is_not_denied_for_accel_quota(
    odh: Kubectl, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace("e2e-kueue")  # accel quota 0 for this team
    plain = cluster.gpu_pod("plain", team="e2e-kueue", gpus=1, profile="a100-only")
    plain["metadata"]["namespace"] = ns
    with pytest.raises(KubectlError) as denied:
        odh.create(plain, dry_run=True)
    assert "quota" in denied.value.stderr
    queued = cluster.gpu_pod("queued", team="e2e-kueue", gpus=1, profile="a100-only")
    queued["metadata"]["namespace"] = ns
    queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "default"
    pod = odh.create(queued, dry_run=True)
    assert pod["spec"]["affinity"]["nodeAffinity"]  # still placed by accel
    odh.create(hardware_profile("odh-queued", queue="default",
                                annotations={"accel.dev/accelerator-types": "nvidia-a100-80gb"}))
    by_profile = odh_pod("by-profile", team="e2e-kueue", namespace=ns, profile="odh-queued", gpus=1)
    admitted = wait_until(lambda: odh.create(by_profile, dry_run=True), timeout_s=60,
                          what="a pod of a Queue-scheduled HardwareProfile admitted without accel quota")
    assert admitted["metadata"]["annotations"]["accel.dev/profile"] == "odh-queued"


def test_kueue_export_is_accepted_by_the_api_server_with_kueues_crds(e2e: cluster.E2ECluster) -> None:
    kubectl = e2e.kubectl
    crds = install_crds(kubectl, "kueue.x-k8s.io_resourceflavors.yaml", "kueue.x-k8s.io_clusterqueues.yaml",
                        "kueue.x-k8s.io_localqueues.yaml")
    try:
        assert e2e.control_plane is not None or os.environ.get("KUBECONFIG"), "needs a kubeconfig for the CLI"
        kubeconfig = str(e2e.control_plane.kubeconfig) if e2e.control_plane else os.environ["KUBECONFIG"]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "kueue",
                "export",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                cluster.NS,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        objects = [o for o in yaml.safe_load_all(done.stdout) if o]
        kinds = {o["kind"] for o in objects}
        assert {"ResourceFlavor", "ClusterQueue", "LocalQueue"} <= kinds
        accepted = []
        for (
            obj
        ) in objects:  # the API server validates the schema (and CEL rules from 1.25); nothing is stored
            try:
                accepted.append(kubectl.create(obj, dry_run=True)["kind"])
            except KubectlError as exc:  # other tests' team namespaces may be going away meanwhile
                if not (obj["kind"] == "LocalQueue" and "not found" in exc.stderr):
                    raise
        assert {"ResourceFlavor", "ClusterQueue", "LocalQueue"} <= set(accepted)
        bad = json.loads(json.dumps(next(o for o in objects if o["kind"] == "ClusterQueue")))
        bad["spec"]["resourceGroups"][0]["flavors"][0]["name"] = "Not_A_Flavor"
        with pytest.raises(KubectlError, match="resourceGroups"):
            kubectl.create(bad, dry_run=True)
        if e2e.server_minor >= 25:  # CEL rules in CRDs are served from 1.25 (alpha, off, before)
            bad = json.loads(json.dumps(next(o for o in objects if o["kind"] == "ClusterQueue")))
            bad["spec"]["resourceGroups"][0]["flavors"][0]["resources"].append(
                {"name": "cpu", "nominalQuota": 1}
            )
            with pytest.raises(KubectlError, match="same number of resources"):
                kubectl.create(bad, dry_run=True)
    finally:
        for name in crds:
            cluster.delete_quietly(kubectl, "crd", name)


def test_a_bound_pod_advances_the_chargeback_counters(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    if not e2e.scheduler_running or e2e.servers is None:
        pytest.skip("needs the scheduler with the extender and the API server on this host")
    ns = team_namespace("e2e-charge")
    pod = cluster.gpu_pod("charged", team="e2e-charge", gpus=2, profile="a100-only")
    pod["metadata"]["namespace"] = ns
    e2e.kubectl.create(pod)
    wait_until(
        lambda: e2e.kubectl.get("pod", "charged", namespace=ns)["spec"].get("nodeName"),
        timeout_s=60,
        what="bound",
    )
    context = e2e.servers.tls_context()

    def counted() -> float | None:
        with urllib.request.urlopen(e2e.servers.metrics_url("api"), timeout=10) as response:
            text = response.read().decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("accel_gpu_seconds_total{") and 'team="e2e-charge"' in line]
        return sum(values) if values and sum(values) > 0 else None

    seconds = wait_until(counted, timeout_s=90, what="accel_gpu_seconds_total for team e2e-charge")
    assert seconds > 0

    # /api/usage shows a caller its own teams' rows (api.identity.usage_scope): read it as the
    # namespace's default service account, whose namespace names the team. The controller manager
    # creates that account shortly after the namespace.
    token = wait_until(
        lambda: _token_or_none(e2e.kubectl, ns), timeout_s=30, what=f"a token for {ns}'s default SA"
    )

    def usage_row() -> dict[str, Any] | None:
        # The pod is still bound, so its cost keeps growing from a fraction of a cent: poll until the
        # row shows it rather than reading once a second after the bind.
        request = urllib.request.Request(
            e2e.servers.url("api", "/api/usage?since=1h"), headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            usage = json.loads(response.read())
        assert usage["source"] == "pods" and usage["scope"] == "your teams: e2e-charge"
        row = next((r for r in usage["rows"] if r["team"] == "e2e-charge"), None)
        return row if row and row["gpuHours"] > 0 and row["cost"] > 0 else None

    row = wait_until(usage_row, timeout_s=60, what="a priced /api/usage row for team e2e-charge")
    assert row["type"] == "nvidia-a100-80gb"


def _token_or_none(kubectl: Kubectl, namespace: str) -> str | None:
    try:
        return kubectl.run("create", "token", "default", "-n", namespace).strip() or None
    except KubectlError:  # the service account is not there yet
        return None
