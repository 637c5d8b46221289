"""Bring up accel on a real cluster for the e2e tests, and describe that cluster to the tests.

Modes (chosen by `detect()`, or forced with ACCEL_E2E_MODE=kind|kubeconfig|local):
1. kind: `kind` and a working Docker are present -> create (or reuse) kind cluster `accel-e2e`,
   `docker build -t accel:e2e .`, `kind load docker-image`, apply `manifests/overlays/kind`.
2. KUBECONFIG: any cluster; the image must be pullable there: set ACCEL_E2E_IMAGE.
3. local: neither of those, but control-plane binaries are here (KUBEBUILDER_ASSETS, or the
   kube-local bundle at ACCEL_KUBE_LOCAL, default ../shared/tools/kube-local): etcd +
   kube-apiserver + kube-controller-manager start on 127.0.0.1 (controlplane.py), the GPU nodes
   are API objects (`local_gpu_nodes`), and the servers run on this host (outofcluster.py).
ACCEL_E2E_OUT_OF_CLUSTER=1 (with kind or KUBECONFIG): the three servers run on this host
(see outofcluster.py); the webhook configurations point at them by `url`. local mode always does.
Otherwise every e2e test is deselected and one line says why.
kind/KUBECONFIG: GPU nodes are faked on the workers: GPU-operator labels plus `nvidia.com/gpu`
capacity patched into node status.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e import controlplane
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until

ROOT = Path(__file__).resolve().parents[2]
NS = "accel-system"
KIND_CLUSTER = "accel-e2e"
KIND_NODE_IMAGE = "kindest/node:v1.31.4"
IMAGE = "accel:e2e"
NO_CLUSTER = "no cluster: install kind+docker, set KUBECONFIG, or provide kube-local / KUBEBUILDER_ASSETS"
MODES = ("kind", "kubeconfig", "local")
# Fake GPU nodes: label values exactly as GPU Feature Discovery publishes them.
FAKE_GPUS = {
    "nvidia-h100-80gb": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"},
    "nvidia-a100-80gb": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.memory": "81920"},
}
GPUS_PER_NODE = 8
Obj = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """Where the e2e tests run, or why they cannot (`skip_reason`)."""

    mode: str  # "kind" | "kubeconfig" | "local" | "none"
    out_of_cluster: bool
    skip_reason: str = ""
    assets: controlplane.Assets | None = None  # local mode: where the binaries come from

    def describe(self) -> str:
        """One line for the test report: the mode and where it runs, or why nothing runs."""
        if self.skip_reason:
            return f"e2e skipped: {self.skip_reason}"
        where = {
            "kind": f"kind cluster {KIND_CLUSTER}",
            "kubeconfig": f"KUBECONFIG={os.environ.get('KUBECONFIG')}",
            "local": f"control plane on 127.0.0.1 from {self.assets.origin if self.assets else '?'}",
        }
        servers = "servers on this host" if self.out_of_cluster else "servers in the cluster"
        return f"e2e mode: {self.mode} ({where[self.mode]}; {servers})"


@dataclass
class E2ECluster:
    kubectl: Kubectl
    target: Target
    gpu_nodes: dict[str, str] = field(default_factory=dict)  # canonical type -> node name
    scheduler_running: bool = False
    cleanup: list[Any] = field(default_factory=list)
    # Out of cluster / local mode only (None otherwise); see outofcluster.Servers.
    servers: Any = None
    control_plane: controlplane.ControlPlane | None = None
    server_minor: int = 0  # Kubernetes minor version of the API server (24 for kube-local)


def detect() -> Target:
    """Pick the mode from the environment; cheap enough to run at collection time."""
    ooc = os.environ.get("ACCEL_E2E_OUT_OF_CLUSTER") == "1"
    forced = os.environ.get("ACCEL_E2E_MODE", "")
    if forced and forced not in MODES:
        return Target("none", ooc, f"ACCEL_E2E_MODE={forced} is not one of {', '.join(MODES)}")
    if forced in ("", "kind") and shutil.which("kind") and shutil.which("docker") and _docker_works():
        return Target("kind", ooc)
    if forced == "kind":
        return Target("none", ooc, "ACCEL_E2E_MODE=kind but kind or a working docker is missing")
    kubeconfig = os.environ.get("KUBECONFIG")
    if (
        forced in ("", "kubeconfig")
        and kubeconfig
        and all(Path(p).is_file() for p in kubeconfig.split(os.pathsep))
    ):
        if not ooc and not os.environ.get("ACCEL_E2E_IMAGE"):
            return Target("none", ooc, "KUBECONFIG cluster: set ACCEL_E2E_IMAGE to a pullable accel image "
                                       "or ACCEL_E2E_OUT_OF_CLUSTER=1")  # fmt: skip
        return Target("kubeconfig", ooc)
    if forced == "kubeconfig":
        return Target("none", ooc, "ACCEL_E2E_MODE=kubeconfig but KUBECONFIG names no readable file")
    assets, why_not = controlplane.find_assets()
    if assets is not None:
        return Target("local", True, assets=assets)
    return Target("none", ooc, NO_CLUSTER if not forced else f"ACCEL_E2E_MODE=local but {why_not}")


def _docker_works() -> bool:
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _sh(*cmd: str, timeout_s: float = 900) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def kind_kubectl(workdir: Path) -> Kubectl:
    """Create (or reuse) the kind cluster and return a kubectl bound to it."""
    if KIND_CLUSTER not in _sh("kind", "get", "clusters").split():
        config = workdir / "kind.yaml"
        config.write_text(yaml.safe_dump({
            "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
            "nodes": [{"role": "control-plane"}, {"role": "worker"}, {"role": "worker"}],
        }))  # fmt: skip
        _sh(
            "kind",
            "create",
            "cluster",
            "--name",
            KIND_CLUSTER,
            "--image",
            KIND_NODE_IMAGE,
            "--config",
            str(config),
            "--wait",
            "120s",
        )
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(_sh("kind", "get", "kubeconfig", "--name", KIND_CLUSTER))
    return Kubectl(kubeconfig=str(kubeconfig))


def build_and_load_image() -> None:
    _sh("docker", "build", "-t", IMAGE, str(ROOT), timeout_s=1800)
    _sh("kind", "load", "docker-image", IMAGE, "--name", KIND_CLUSTER)


def render_manifests(kubectl: Kubectl) -> list[Obj]:
    """The kind overlay, minus prometheus-operator kinds when their CRDs are absent."""
    text = kubectl.run("kustomize", str(ROOT / "manifests/overlays/kind"))
    objects = [o for o in yaml.safe_load_all(text) if o]
    have_monitoring = "servicemonitors" in kubectl.run(
        "api-resources", "--api-group=monitoring.coreos.com", "-o", "name"
    )
    image = os.environ.get("ACCEL_E2E_IMAGE")
    kept = []
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/") and not have_monitoring:
            continue
        if image:
            _retarget_image(obj, image)
        kept.append(obj)
    return kept


def _retarget_image(obj: Obj, image: str) -> None:
    text = json.dumps(obj)
    if f'"image": "{IMAGE}"' in text:
        text = text.replace(f'"image": "{IMAGE}"', f'"image": "{image}"').replace(
            '"imagePullPolicy": "Never"', '"imagePullPolicy": "IfNotPresent"'
        )
        obj.clear()
        obj.update(json.loads(text))


def deploy_in_cluster(kubectl: Kubectl) -> None:
    """Apply the manifests and wait until certs are issued and every Deployment is available."""
    objects = render_manifests(kubectl)
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": objects}, server_side=True)
    kubectl.run(
        "-n", NS, "wait", "--for=condition=complete", "job/accel-certs", "--timeout=300s", timeout_s=320
    )
    for name in ("accel-webhook", "accel-extender", "accel-api", "accel-scheduler"):
        kubectl.run("-n", NS, "rollout", "status", f"deploy/{name}", "--timeout=300s", timeout_s=320)
    wait_until(
        lambda: kubectl.get("mutatingwebhookconfiguration", "accel-mutate")["webhooks"][0][
            "clientConfig"
        ].get("caBundle"),
        timeout_s=60,
        what="caBundle injected into accel-mutate",
    )


def fake_gpu_nodes(kubectl: Kubectl) -> dict[str, str]:
    """Turn the worker nodes into H100 and A100 nodes (labels + status capacity)."""
    nodes = kubectl.get("nodes")["items"]
    workers = [
        n["metadata"]["name"]
        for n in nodes
        if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})
    ]
    assigned = dict(zip(FAKE_GPUS, workers or [nodes[0]["metadata"]["name"]], strict=False))
    for gpu_type, node in assigned.items():
        labels = {
            **FAKE_GPUS[gpu_type],
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(GPUS_PER_NODE),
        }
        kubectl.run("label", "node", node, "--overwrite", *(f"{k}={v}" for k, v in labels.items()))
        ops = [{"op": "add", "path": f"/status/{field_name}/nvidia.com~1gpu", "value": str(GPUS_PER_NODE)}
               for field_name in ("capacity", "allocatable")]  # fmt: skip
        kubectl.patch_status("node", node, ops)
    return assigned


TOPOLOGY = "network.topology.nvidia.com"
API_STALENESS_S = 5
PARKED_PROFILE = "parked"
REPLICAS_QUOTA = 10  # team e2e-replicas: the two-replica burst may admit exactly this many GPUs
LEADER_QUOTA = 10  # teams e2e-leader-*: test_ledger_leader's bursts admit exactly this many


@dataclass(frozen=True)
class LocalNode:
    """A GPU node of the local mode: labels as GPU Feature Discovery writes them, status capacity
    as the device plugin advertises it."""

    name: str
    gpu_type: str  # canonical accel type, the key of E2ECluster.gpu_nodes
    labels: dict[str, str]
    gpus: dict[str, int]  # extended resource -> count (capacity == allocatable)


def _gfd(product: str, count: int, memory_mib: int, spine: str, leaf: str, **extra: str) -> dict[str, str]:
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.strategy": "none",
        "topology.kubernetes.io/zone": "e2e-zone-a",
        f"{TOPOLOGY}/spine": spine,
        f"{TOPOLOGY}/leaf": leaf,
        **extra,
    }


# Several types, one time-sliced node (renameByDefault: nvidia.com/gpu.shared, 2 GPUs x 4
# replicas) and one MIG node (mixed strategy), on two spines and four leaves.
LOCAL_NODES = (
    LocalNode(
        "e2e-h100-1",
        "nvidia-h100-80gb",
        _gfd("NVIDIA-H100-80GB-HBM3", 8, 81559, "spine-1", "leaf-1a"),
        {"nvidia.com/gpu": GPUS_PER_NODE},
    ),
    LocalNode(
        "e2e-a100-1",
        "nvidia-a100-80gb",
        _gfd("NVIDIA-A100-SXM4-80GB", 8, 81920, "spine-1", "leaf-1b"),
        {"nvidia.com/gpu": GPUS_PER_NODE},
    ),
    LocalNode(
        "e2e-l4-shared-1",
        "nvidia-l4-24gb",
        _gfd(
            "NVIDIA-L4",
            2,
            23034,
            "spine-2",
            "leaf-2a",
            **{
                "nvidia.com/gpu.replicas": "4",
                "nvidia.com/gpu.sharing-strategy": "time-slicing",
                "nvidia.com/device-plugin.config": "l4-shared",
            },
        ),
        {"nvidia.com/gpu.shared": 8},
    ),
    LocalNode(
        "e2e-a100-mig-1",
        "nvidia-a100-40gb",
        _gfd(
            "NVIDIA-A100-SXM4-40GB",
            2,
            40960,
            "spine-2",
            "leaf-2b",
            **{
                "nvidia.com/mig.strategy": "mixed",
                "nvidia.com/mig.capable": "true",
                "nvidia.com/mig.config": "custom-mixed",
                "nvidia.com/mig-1g.5gb.count": "7",
                "nvidia.com/mig-1g.5gb.memory": "4864",
                "nvidia.com/mig-3g.20gb.count": "2",
                "nvidia.com/mig-3g.20gb.memory": "19968",
            },
        ),
        {"nvidia.com/mig-1g.5gb": 7, "nvidia.com/mig-3g.20gb": 2},
    ),
)


def local_node_object(node: LocalNode) -> Obj:
    """The Node as a kubelet-less cluster needs it: no taints, Ready, room for pods."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110"} | {k: str(v) for k, v in node.gpus.items()}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **node.labels,
            },
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "accel e2e: a Node object without a kubelet",
                }
            ],
        },
    }


def create_local_gpu_nodes(kubectl: Kubectl, nodes: tuple[LocalNode, ...] = LOCAL_NODES) -> dict[str, str]:
    """Create the nodes; status goes through the status subresource (a create drops it).

    The API server's TaintNodesByCondition admission taints new nodes `not-ready`; the node
    lifecycle controller that would lift it once the kubelet reports Ready does not run here, so
    the taint is removed by hand, as that controller would.
    """
    for node in nodes:
        obj = local_node_object(node)
        kubectl.apply({k: v for k, v in obj.items() if k != "status"})
        current = kubectl.get("node", node.name)
        current["spec"].pop("taints", None)
        kubectl.run("replace", "-f", "-", stdin=json.dumps(current))
        current = kubectl.get("node", node.name)
        current["status"] = current.get("status", {}) | obj["status"]
        kubectl.run(
            "replace", "--raw", f"/api/v1/nodes/{node.name}/status", "-f", "-", stdin=json.dumps(current)
        )
    return {node.gpu_type: node.name for node in nodes}


def server_minor_version(kubectl: Kubectl) -> int:
    """The API server's Kubernetes minor version ("24+" from alpha builds counts as 24)."""
    version = json.loads(kubectl.run("get", "--raw", "/version"))
    return int("".join(ch for ch in str(version.get("minor", "0")) if ch.isdigit()) or 0)


def e2e_policy() -> dict[str, str]:
    """The policy the e2e tests are written against (ConfigMap data: file name -> YAML)."""
    settings = {
        "mode": "enforce",
        "teamLabel": "team",
        "requiredPodLabels": ["team"],
        "defaultProfile": "gpu-any",
        "excludedNamespaces": ["kube-system", NS],
        "schedulerName": "accel-scheduler",
        # /readyz turns 503 after this long without a successful list/watch (the API
        # server restart case waits for it; 60s by default).
        "api": {"maxStalenessSeconds": API_STALENESS_S},
        # test_platforms and test_redteam_profiles create trusted HardwareProfiles here; no others count
        "hardwareProfileNamespaces": ["e2e-odh-profiles", "e2e-redteam-profiles"],
    }
    profiles = [
        {
            "name": "h100-first",
            "displayName": "H100, then A100",
            "sharing": "exclusive",
            "gpus": {"default": 1, "max": 8},
            "accelerators": [{"type": "nvidia-h100-80gb"}, {"type": "nvidia-a100-80gb"}],
        },
        {
            "name": "a100-only",
            "displayName": "A100 80GB",
            "sharing": "exclusive",
            "gpus": {"default": 1, "max": 8},
            "accelerators": [{"type": "nvidia-a100-80gb"}],
            "costPerGpuHour": 2.0,
        },
        {"name": "gpu-any", "displayName": "Any GPU", "accelerators": [], "gpus": {"default": 1, "max": 8}},
        {
            "name": "h100-only",
            "displayName": "H100 80GB",
            "sharing": "exclusive",
            "gpus": {"default": 1, "max": 8},
            "accelerators": [{"type": "nvidia-h100-80gb"}],
        },
        # No node has this type: admission-only cases (bursts) park their pods Pending, so they
        # take no GPUs from the scheduling cases.
        {
            "name": PARKED_PROFILE,
            "displayName": "B200 (no such node here)",
            "sharing": "exclusive",
            "gpus": {"default": 1, "max": 8},
            "accelerators": [{"type": "nvidia-b200-180gb"}],
        },
    ]
    all_profiles = ["h100-first", "a100-only", "gpu-any", "h100-only", PARKED_PROFILE]
    teams = [
        {"name": "e2e-mutate", "quota": {"*": 8}, "allowedProfiles": all_profiles},
        {"name": "e2e-quota", "quota": {"nvidia-h100-80gb": 2, "*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-dryrun", "quota": {"nvidia-h100-80gb": 2, "*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-sched", "quota": {"*": 32}, "allowedProfiles": all_profiles},
        {"name": "e2e-burst", "quota": {"*": 4}, "allowedProfiles": all_profiles},
        {"name": "e2e-reload", "quota": {"*": 8}, "allowedProfiles": all_profiles},
        # test_platforms: HardwareProfile CRs (any profile), Kueue (no accel quota left), chargeback
        {"name": "e2e-odh", "quota": {"*": 8}},
        {"name": "e2e-kueue", "quota": {"nvidia-a100-80gb": 0, "*": 0}, "kueueManaged": True},
        {"name": "e2e-charge", "quota": {"*": 8}, "allowedProfiles": all_profiles},
        {"name": "e2e-workload", "quota": {"*": 16}, "allowedProfiles": all_profiles},
        {"name": "e2e-overquota", "quota": {"*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-replicas", "quota": {"*": REPLICAS_QUOTA}, "allowedProfiles": all_profiles},
        {"name": "e2e-preempt", "quota": {"*": 64}, "allowedProfiles": all_profiles},
        {"name": "e2e-restart", "quota": {"*": 4}, "allowedProfiles": all_profiles},
        # test_ledger_replicas: each case its own team (quota release after deletion is asynchronous)
        *({"name": f"e2e-ledger-{case}", "quota": {"*": 4}, "allowedProfiles": all_profiles}
          for case in ("freeze", "restart", "floor", "corrupt")),
        # test_ledger_leader: each case its own team
        *({"name": f"e2e-leader-{case}", "quota": {"*": LEADER_QUOTA}, "allowedProfiles": all_profiles}
          for case in ("burst", "stop", "kill")),
        # test_quota_once: each case its own team (usage release after deletion is asynchronous)
        {"name": "e2e-forged", "quota": {"nvidia-a100-80gb": 2, "*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-recreate", "quota": {"nvidia-a100-80gb": 2, "*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-rquota", "quota": {"nvidia-a100-80gb": 2, "*": 2}, "allowedProfiles": all_profiles},
        {"name": "e2e-fallback", "quota": {"nvidia-h100-80gb": 16, "nvidia-a100-80gb": 8, "*": 24},
         "allowedProfiles": all_profiles},
        # test_governance: a team restricted to A100 (no-profile pods get gpu-any narrowed to it), and one
        # whose only allowed profile is not the cluster default (no-profile pods are denied)
        {"name": "e2e-govern", "quota": {"nvidia-a100-80gb": 8, "*": 8}, "allowedTypes": ["nvidia-a100-80gb"],
         "allowedProfiles": ["a100-only", "gpu-any"]},
        {"name": "e2e-govern-strict", "quota": {"*": 8}, "allowedProfiles": ["a100-only"]},
        # test_redteam_*: hostile authors; each case its own team (quota release is asynchronous)
        *({"name": f"e2e-redteam-{case}", "quota": {"nvidia-h100-80gb": 2, "*": 2},
           "allowedProfiles": all_profiles}
          for case in ("kueue", "init", "workload", "preempt", "recreate")),
        # test_redteam_jobs: a forged job size; the quota admits one 4-GPU A100 pod, no more
        {"name": "e2e-redteam-jobsize", "quota": {"nvidia-a100-80gb": 4, "*": 4},
         "allowedProfiles": all_profiles},
        # test_annotation_edits: parked (B200) pods hold the B200 line, one A100 pod the A100 line;
        # each case its own team (a deleted namespace's quota is freed asynchronously)
        *({"name": f"e2e-edits-{case}", "quota": {"nvidia-b200-180gb": 2, "nvidia-a100-80gb": 1, "*": 8},
           "allowedProfiles": all_profiles} for case in ("refused", "open")),
    ]
    return {
        "settings.yaml": yaml.safe_dump(settings),
        "profiles.yaml": yaml.safe_dump({"profiles": profiles}),
        "teams.yaml": yaml.safe_dump({"teams": teams}),
    }


def apply_policy(kubectl: Kubectl, data: dict[str, str]) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "accel-policy", "namespace": NS},
            "data": data,
        },
        server_side=True,
    )


def gpu_pod(name: str, *, team: str, gpus: int, profile: str | None = None) -> Obj:
    """A pause pod asking for `gpus` nvidia.com/gpu (the image is preloaded on kind nodes)."""
    annotations = {"accel.dev/profile": profile} if profile else {}
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"team": team}, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": resources}],
        },
    }


def gpu_pod_template(*, team: str, gpus: int, profile: str, app: str) -> Obj:
    """A pod template for Deployments and Jobs (their controllers create the pods, generateName)."""
    pod = gpu_pod("unused", team=team, gpus=gpus, profile=profile)
    pod["metadata"] = {"labels": {"team": team, "app": app}, "annotations": pod["metadata"]["annotations"]}
    return {"metadata": pod["metadata"], "spec": pod["spec"]}


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="accel-e2e-"))


def wait_bound(kubectl: Kubectl, namespace: str, name: str, *, timeout_s: float = 90) -> Obj:
    """The pod once it is bound to a node (polled until `timeout_s`)."""

    def bound() -> Obj | None:
        pod = kubectl.get("pod", name, namespace=namespace)
        return pod if pod["spec"].get("nodeName") else None

    return wait_until(bound, timeout_s=timeout_s, what=f"pod {name} bound")


def delete_quietly(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None) -> None:
    # Teardown is best effort; the next run reuses or recreates the object.
    with contextlib.suppress(KubectlError):
        kubectl.delete(kind, name, namespace=namespace)


def wait_for_policy(
    kubectl: Kubectl, *, profile: str, team: str, namespace: str, timeout_s: float = 30
) -> Obj:
    """Poll server-side dry runs until the webhook knows `profile` (i.e. the policy reloaded)."""
    probe = gpu_pod("probe", team=team, gpus=1, profile=profile)
    probe["metadata"]["namespace"] = namespace

    def admitted_in_ns() -> Obj | None:
        pod = kubectl.create(probe, dry_run=True)
        return pod if pod["metadata"].get("annotations", {}).get("accel.dev/profile") == profile else None

    return wait_until(admitted_in_ns, timeout_s=timeout_s, what=f"policy with profile {profile} in force")
