"""Builders for admission tests: the example policy, GPU nodes, an inventory, AdmissionReviews.

Nodes are built as `NodeInventory` models directly (labels as GFD publishes them plus the
normalised `NodeAccelerators`), so these tests exercise admission on exact, known node facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from accel.admission.context import AdmissionContext, build_context
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.labels import MigLayout, NodeAccelerators, Sharing
from accel.cluster.pods import parse_pod
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy

ROOT = Path(__file__).resolve().parents[2]
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
    and, when given, `teams.yaml` replaced by `teams`."""
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    document = yaml.safe_load(files["settings.yaml"])
    document.update(settings)
    files["settings.yaml"] = yaml.safe_dump(document)
    if teams is not None:
        files["teams.yaml"] = yaml.safe_dump({"teams": teams})
    return parse_policy(files, load_builtin_catalog())


def gpu_node(
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
    resources = {resource: count * replicas} if not mig else {f"nvidia.com/mig-{p}": n for p, n in mig.items()}
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
    return NodeInventory(name=name, labels={key: product, "kubernetes.io/hostname": name}, accelerators=accelerators)


DEFAULT_NODES: tuple[NodeInventory, ...] = (
    gpu_node("h200-1", "nvidia-h200-141gb", "NVIDIA-H200"),
    gpu_node("h100-1", "nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3"),
    gpu_node("a100-1", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB"),
    gpu_node("a100-mig", "nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", mig={"1g.10gb": 56}),
    gpu_node("l4-1", "nvidia-l4-24gb", "NVIDIA-L4", resource="nvidia.com/gpu.shared", count=4, replicas=4,
             sharing=Sharing.TIME_SLICED),
    gpu_node("v100-1", "nvidia-v100-32gb", "Tesla-V100-SXM2-32GB", count=4),
    gpu_node("mi300-1", "amd-mi300x-192gb", "AMD_Instinct_MI300X_OAM", key="amd.com/gpu.product-name",
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


def make_context(pods: Iterable[Mapping[str, Any]] = (), *, policy: ParsedPolicy | None = None, **kw: Any) -> AdmissionContext:
    return build_context(policy or example_policy(), make_inventory(pods, **kw))


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
