"""The one set of test builders: the example policy, nodes, pods, inventories, AdmissionReviews.

Two families, by what the code under test reads:
- API objects (`node_object`, `shared_node_object`, `mig_node_object`, `named_gpu_pod`,
  `inventory`): Node and Pod dicts as the API server returns them, run through the real label
  normalisation and `build_inventory` (the extender's and the servers' view).
- Inventory models (`node_model`, `DEFAULT_NODES`, `make_inventory`, `make_context`, `gpu_pod`,
  `review`): `NodeInventory` models built directly (labels as GFD publishes them plus the
  normalised `NodeAccelerators`), so admission tests run on exact, known node facts; `gpu_pod` is a
  pod as a ReplicaSet creates it (generateName, defaulted fields).
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from accel.admission.context import AdmissionContext, build_context
from accel.capacity.inventory import Inventory, NodeInventory, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.labels import MigLayout, NodeAccelerators, Sharing
from accel.cluster.pods import parse_pod
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from kube.testing import make_node, make_pod

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "examples" / "policy"

TEAM_NAMESPACES: dict[str, dict[str, str]] = {
    "nlp": {"team": "nlp"},
    "vision": {"team": "vision"},
    "research": {"team": "research"},
    "platform": {"team": "platform"},
    "unlabelled": {},
    "ghosts": {"team": "ghosts"},
    "accel-system": {},
    "kube-system": {},
}


def example_policy(*, teams: list[dict[str, Any]] | None = None, **settings: Any) -> ParsedPolicy:
    """The example policy with `settings.yaml` keys overridden (camelCase keys, as in the file)
    and, when given, `teams.yaml` replaced by `teams`. A new object on every call (memos keyed
    by the policy object start afresh); `shared_example_policy` is the one parse tests share."""
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    document = yaml.safe_load(files["settings.yaml"])
    document.update(settings)
    files["settings.yaml"] = yaml.safe_dump(document)
    if teams is not None:
        files["teams.yaml"] = yaml.safe_dump({"teams": teams})
    return parse_policy(files, load_builtin_catalog())


@lru_cache(maxsize=1)
def shared_example_policy() -> ParsedPolicy:
    """The example policy, parsed once for all tests that only read it."""
    return example_policy()


def node_model(
    name: str,
    accel_type: str,
    product: str,
    *,
    count: int = 8,
    key: str = "nvidia.com/gpu.product",
    resource: str = "nvidia.com/gpu",
    sharing: Sharing = Sharing.EXCLUSIVE,
    replicas: int = 1,
    mig: Mapping[str, int] | None = None,
) -> NodeInventory:
    """A schedulable GPU node as the inventory sees it."""
    resources = (
        {resource: count * replicas} if not mig else {f"nvidia.com/mig-{p}": n for p, n in mig.items()}
    )
    accelerators = NodeAccelerators(
        types=(accel_type,),
        vendor=accel_type.split("-", 1)[0],
        gpu_count=count,
        product_label=product,
        sharing=sharing,
        replicas=replicas,
        mig=MigLayout(strategy="mixed", slices=dict(mig)) if mig else None,
        resources=resources,
    )
    return NodeInventory(
        name=name, labels={key: product, "kubernetes.io/hostname": name}, accelerators=accelerators
    )


DEFAULT_NODES: tuple[NodeInventory, ...] = (
    node_model("h200-1", "nvidia-h200-141gb", "NVIDIA-H200"),
    node_model("h100-1", "nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3"),
    node_model("a100-1", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB"),
    node_model("a100-mig", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", mig={"1g.10gb": 56}),
    node_model("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4, replicas=4,
             sharing=Sharing.TIME_SLICED),
    node_model("v100-1", "nvidia-v100-32gb", "Tesla-V100-SXM2-32GB", count=4),
    node_model("mi300-1", "amd-mi300x-192gb", "AMD_Instinct_MI300X_OAM", key="amd.com/gpu.product-name",
             resource="amd.com/gpu"),
)


def make_inventory(
    pods: Iterable[Mapping[str, Any]] = (),
    *,
    nodes: Iterable[NodeInventory] = DEFAULT_NODES,
    namespaces: Mapping[str, Mapping[str, str]] = TEAM_NAMESPACES,
    namespace_annotations: Mapping[str, Mapping[str, str]] | None = None,
) -> Inventory:
    """Like accel.capacity.inventory.build_inventory: bound pods allocate their node's resources."""
    views = [v for v in (parse_pod(p) for p in pods) if not v.terminal]
    allocated: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for view in views:
        for resource, units in view.accelerators.items():
            if view.node_name:
                allocated[view.node_name][resource] += units
    built = tuple(n.model_copy(update={"allocated": dict(allocated.get(n.name, {}))}) for n in nodes)
    return Inventory(
        nodes=built,
        pods=tuple(v for v in views if v.wants_accelerators),
        namespace_labels={ns: dict(labels) for ns, labels in namespaces.items()},
        namespace_annotations={ns: dict(a) for ns, a in (namespace_annotations or {}).items()},
    )


def make_context(
    pods: Iterable[Mapping[str, Any]] = (), *, policy: ParsedPolicy | None = None, **kw: Any
) -> AdmissionContext:
    return build_context(policy or example_policy(), make_inventory(pods, **kw))


TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' random name suffixes (utilrand)


def api_server_suffix(seed: int) -> str:
    """5 random characters as the API server appends them (generateName, the token volume), fixed per seed."""
    rng = random.Random(seed)
    return "".join(rng.choice(NAME_SUFFIX_ALPHABET) for _ in range(5))


def service_account_pod(pod: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A copy of `pod` as the ServiceAccount admission plugin leaves it before the mutating webhooks
    (Kubernetes >= 1.22, bound service-account token volumes): the default service account, and its
    own projected volume `kube-api-access-<random>` (token, cluster CA, namespace), appended to the
    pod's volumes and mounted read-only in every container and init container. A spec or container
    that is not an object is left as it is."""
    out = copy.deepcopy(dict(pod))
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return out
    volume = f"kube-api-access-{api_server_suffix(seed)}"
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", "default")
    volumes = spec.setdefault("volumes", [])
    sources = [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [
            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
        ]}},
    ]
    if isinstance(volumes, list):
        volumes.append({"name": volume, "projected": {"defaultMode": 420, "sources": sources}})
    for name in ("initContainers", "containers"):
        containers = spec.get(name)
        for container in containers if isinstance(containers, list) else ():
            mounts = container.setdefault("volumeMounts", []) if isinstance(container, dict) else None
            if isinstance(mounts, list):
                mounts.append({"name": volume, "readOnly": True, "mountPath": TOKEN_MOUNT})
    return out


def gpu_pod(
    *,
    namespace: str = "nlp",
    profile: str | None = "a100-80gb",
    gpus: str | None = "1",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    name: str | None = None,
    node: str | None = None,
    resource: str = "nvidia.com/gpu",
    phase: str = "Pending",
) -> dict[str, Any]:
    """A single-container pod like a ReplicaSet creates it (generateName, defaulted fields)."""
    meta: dict[str, Any] = {
        "namespace": namespace,
        "labels": {"team": namespace, "user": "alice", "job_type": "training", **(labels or {})},
    }
    meta["name" if name else "generateName"] = name or "train-7d9f8c6b5-"
    notes = dict(annotations or {})
    if profile:
        notes["accel.dev/profile"] = profile
    if notes:
        meta["annotations"] = notes
    resources: dict[str, Any] = {"requests": {"cpu": "1"}, "limits": {}}
    if gpus is not None:
        resources["requests"][resource] = gpus
        resources["limits"][resource] = gpus
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "pytorch:2", "resources": resources}],
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


def review(pod: Mapping[str, Any], *, uid: str = "uid-1", namespace: str | None = None, dry_run: bool = False,
           operation: str = "CREATE") -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview request for a pod."""
    ns = namespace or str(pod.get("metadata", {}).get("namespace", "default"))
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": str(pod.get("metadata", {}).get("name", "")),
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": dict(pod),
            "oldObject": None,
            "dryRun": dry_run,
        },
    }


# ---- API objects (the extender's and the servers' view) ---------------------------------------

PRODUCT = {
    "nvidia-a100-80gb": "NVIDIA-A100-SXM4-80GB",
    "nvidia-h100-80gb": "NVIDIA-H100-80GB-HBM3",
    "nvidia-h200-141gb": "NVIDIA-H200",
    "nvidia-l4-24gb": "NVIDIA-L4",
}


def node_object(
    name: str,
    gpu_type: str = "nvidia-a100-80gb",
    gpus: int = 8,
    *,
    zone: str = "z1",
    spine: str | None = None,
    leaf: str | None = None,
    rdma: bool = False,
    cpu: str = "64",
    ready: bool = True,
    cordoned: bool = False,
) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.product": PRODUCT[gpu_type],
        "nvidia.com/gpu.count": str(gpus),
        "topology.kubernetes.io/zone": zone,
    }
    if spine:
        labels["network.topology.nvidia.com/spine"] = spine
    if leaf:
        labels["network.topology.nvidia.com/leaf"] = leaf
    if rdma:
        labels["feature.node.kubernetes.io/custom-rdma.available"] = "true"
    node = make_node(name, labels=labels, allocatable={"nvidia.com/gpu": str(gpus), "cpu": cpu})
    node["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    node["spec"] = {"unschedulable": True} if cordoned else {}
    return node


def shared_node_object(name: str, gpus: int = 2, replicas: int = 4) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing",
    }
    return make_node(
        name, labels=labels, allocatable={"nvidia.com/gpu.shared": str(gpus * replicas), "cpu": "16"}
    )


def mig_node_object(name: str, slices: int = 14) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "nvidia.com/gpu.count": "2",
        "nvidia.com/mig.strategy": "mixed",
        "nvidia.com/mig-1g.10gb.count": str(slices),
    }
    return make_node(name, labels=labels, allocatable={"nvidia.com/mig-1g.10gb": str(slices), "cpu": "16"})


def named_gpu_pod(
    name: str,
    gpus: int = 1,
    *,
    profile: str | None = "a100-80gb",
    node: str | None = None,
    resource: str = "nvidia.com/gpu",
    ns: str = "team-a",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    notes = dict(annotations or {})
    if profile:
        notes["accel.dev/profile"] = profile
    requests = {resource: str(gpus)}
    if cpu:
        requests["cpu"] = cpu
    return make_pod(
        name, ns, node=node, requests=requests, labels=labels, annotations=notes, uid=f"uid-{name}"
    )


def inventory(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = ()) -> Inventory:  # type: ignore[assignment]
    parsed = shared_example_policy()
    return build_inventory(nodes, list(pods), [], catalog=parsed.catalog, policy=parsed.policy)
