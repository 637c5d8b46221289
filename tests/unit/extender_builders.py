"""Builders shared by the extender tests: sample policy, GPU nodes with topology, a static state."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from accel.capacity.inventory import Inventory, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from kube.testing import make_node, make_pod

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {
    "nvidia-a100-80gb": "NVIDIA-A100-SXM4-80GB",
    "nvidia-h100-80gb": "NVIDIA-H100-80GB-HBM3",
    "nvidia-h200-141gb": "NVIDIA-H200",
    "nvidia-l4-24gb": "NVIDIA-L4",
}


@lru_cache(maxsize=1)
def sample_policy() -> ParsedPolicy:
    files = {p.name: p.read_text() for p in (ROOT / "examples" / "policy").glob("*.yaml")}
    return parse_policy(files, load_builtin_catalog())


def gpu_node(
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


def shared_node(name: str, gpus: int = 2, replicas: int = 4) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing",
    }
    return make_node(
        name, labels=labels, allocatable={"nvidia.com/gpu.shared": str(gpus * replicas), "cpu": "16"}
    )


def mig_node(name: str, slices: int = 14) -> dict[str, Any]:
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "nvidia.com/gpu.count": "2",
        "nvidia.com/mig.strategy": "mixed",
        "nvidia.com/mig-1g.10gb.count": str(slices),
    }
    return make_node(name, labels=labels, allocatable={"nvidia.com/mig-1g.10gb": str(slices), "cpu": "16"})


def gpu_pod(
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
    parsed = sample_policy()
    return build_inventory(nodes, list(pods), [], catalog=parsed.catalog, policy=parsed.policy)
