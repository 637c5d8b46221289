"""Regenerate examples/cluster.yaml, the sample cluster snapshot (a `v1 List`, as kubectl prints).

Run: .venv/bin/python examples/make_sample_cluster.py > examples/cluster.yaml
Mixed H200/H100/A100/V100/L4 nodes plus one AMD MI300X node, a time-sliced L4 node, a MIG A100
node, one node without GPU-operator labels, leaf/spine/zone labels and running pods.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

TOPO = "network.topology.nvidia.com"
RDMA = "feature.node.kubernetes.io/custom-rdma.available"


def node(name: str, labels: dict[str, str], gpus: dict[str, int], *, cpu: int = 96, mem_gi: int = 1024,
         ready: bool = True, cordoned: bool = False, taint: bool = True) -> dict[str, Any]:
    resources = {
        "cpu": str(cpu),
        "memory": f"{mem_gi}Gi",
        "pods": "110",
        **{k: str(v) for k, v in gpus.items()},
    }
    spec: dict[str, Any] = {}
    if taint and gpus:
        spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    if cordoned:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": spec,
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "Unknown",
                    "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                }
            ],
        },
    }


def nvidia(
    product: str,
    count: int,
    memory_mib: int,
    zone: str,
    spine: str,
    leaf: str,
    *,
    rdma: bool = True,
    **extra: str,
) -> dict[str, str]:
    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.strategy": "none",
        "topology.kubernetes.io/region": "eu-west",
        "topology.kubernetes.io/zone": zone,
        f"{TOPO}/spine": spine,
        f"{TOPO}/leaf": leaf,
    }
    if rdma:
        labels[RDMA] = "true"
    labels.update(extra)
    return labels


def nodes() -> list[dict[str, Any]]:
    out = []
    for i in (1, 2):
        out.append(
            node(
                f"gpu-h200-{i:02d}",
                nvidia("NVIDIA-H200", 8, 143771, "eu-west-1a", "spine-1", "leaf-1a"),
                {"nvidia.com/gpu": 8, "rdma/rdma_shared_device_a": 63},
                cpu=192,
                mem_gi=2048,
            )
        )
    for i in range(1, 5):
        leaf = "leaf-2a" if i <= 2 else "leaf-2b"
        out.append(
            node(
                f"gpu-h100-{i:02d}",
                nvidia("NVIDIA-H100-80GB-HBM3", 8, 81559, "eu-west-1a", "spine-2", leaf),
                {"nvidia.com/gpu": 8, "rdma/rdma_shared_device_a": 63},
                cpu=192,
                mem_gi=2048,
            )
        )
    for i in range(1, 4):
        out.append(
            node(
                f"gpu-a100-{i:02d}",
                nvidia("NVIDIA-A100-SXM4-80GB", 8, 81920, "eu-west-1b", "spine-3", "leaf-3a"),
                {"nvidia.com/gpu": 8},
                cpu=128,
            )
        )
    mig = nvidia("NVIDIA-A100-80GB-PCIe", 4, 81920, "eu-west-1b", "spine-3", "leaf-3b", rdma=False)
    mig.update(
        {
            "nvidia.com/mig.strategy": "mixed",
            "nvidia.com/mig.capable": "true",
            "nvidia.com/mig.config": "custom-mixed",
            "nvidia.com/mig-1g.10gb.count": "14",
            "nvidia.com/mig-1g.10gb.memory": "9728",
            "nvidia.com/mig-3g.40gb.count": "4",
            "nvidia.com/mig-3g.40gb.memory": "40192",
        }
    )
    out.append(
        node(
            "gpu-a100-mig-01",
            mig,
            {"nvidia.com/mig-1g.10gb": 14, "nvidia.com/mig-3g.40gb": 4},
            cpu=64,
            mem_gi=512,
        )
    )
    out.append(
        node(
            "gpu-v100-01",
            nvidia("Tesla-V100-SXM2-32GB", 4, 32510, "eu-west-1b", "spine-4", "leaf-4a", rdma=False),
            {"nvidia.com/gpu": 4},
            cpu=48,
            mem_gi=384,
        )
    )
    out.append(
        node(
            "gpu-v100-02",
            nvidia("Tesla-V100-SXM2-32GB", 4, 32510, "eu-west-1b", "spine-4", "leaf-4a", rdma=False),
            {"nvidia.com/gpu": 4},
            cpu=48,
            mem_gi=384,
            cordoned=True,
        )
    )
    shared = nvidia("NVIDIA-L4", 2, 23034, "eu-west-1c", "spine-5", "leaf-5a", rdma=False)
    shared.update(
        {
            "nvidia.com/gpu.replicas": "4",
            "nvidia.com/gpu.sharing-strategy": "time-slicing",
            "nvidia.com/device-plugin.config": "l4-shared",
        }
    )
    out.append(node("gpu-l4-shared-01", shared, {"nvidia.com/gpu.shared": 8}, cpu=32, mem_gi=128))
    out.append(
        node(
            "gpu-l4-01",
            nvidia("NVIDIA-L4", 4, 23034, "eu-west-1c", "spine-5", "leaf-5a", rdma=False),
            {"nvidia.com/gpu": 4},
            cpu=48,
            mem_gi=192,
        )
    )
    amd = {
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
        "amd.com/gpu.device-id": "74a1",
        "amd.com/gpu.family": "AI",
        "amd.com/gpu.vram": "192G",
        "amd.com/gpu.cu-count": "304",
        "topology.kubernetes.io/zone": "eu-west-1c",
        f"{TOPO}/spine": "spine-6",
        f"{TOPO}/leaf": "leaf-6a",
        RDMA: "true",
    }
    out.append(node("gpu-mi300x-01", amd, {"amd.com/gpu": 8}, cpu=192, mem_gi=2048, taint=False))
    out.append(
        node(
            "gpu-legacy-01",
            {"topology.kubernetes.io/zone": "eu-west-1c"},
            {"nvidia.com/gpu": 2},
            cpu=32,
            mem_gi=128,
            taint=False,
        )
    )
    out.append(
        node(
            "gpu-h100-05",
            nvidia("NVIDIA-H100-80GB-HBM3", 8, 81559, "eu-west-1a", "spine-2", "leaf-2b"),
            {"nvidia.com/gpu": 8},
            cpu=192,
            mem_gi=2048,
            ready=False,
        )
    )
    out.append(node("cpu-01", {"topology.kubernetes.io/zone": "eu-west-1a"}, {}, cpu=64, mem_gi=256))
    return out


def namespace(name: str, team: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": name}
    if team:
        labels["team"] = team
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    name: str,
    ns: str,
    team: str,
    profile: str | None,
    node_name: str,
    resources: dict[str, int],
    accel_type: str | None,
    *,
    job: str | None = None,
    phase: str = "Running",
) -> dict[str, Any]:
    annotations = {}
    if profile:
        annotations["accel.dev/profile"] = profile
    if accel_type:
        annotations["accelerator.opendatahub.io/type"] = accel_type
    labels = {"team": team, "user": "alice" if team == "nlp" else "bob", "job_type": "training"}
    if job:
        labels["accel.dev/job"] = job
    limits = {k: str(v) for k, v in resources.items()}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "nodeName": node_name,
            "schedulerName": "accel-scheduler",
            "containers": [
                {
                    "name": "main",
                    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                    "resources": {"requests": {"cpu": "8", "memory": "64Gi", **limits}, "limits": limits},
                }
            ],
        },
        "status": {"phase": phase},
    }


def pods() -> list[dict[str, Any]]:
    return [
        pod(
            "llm-pretrain-0",
            "team-nlp",
            "nlp",
            "large-any",
            "gpu-h200-01",
            {"nvidia.com/gpu": 8},
            "nvidia-h200-141gb",
            job="llm-pretrain",
        ),
        pod(
            "llm-pretrain-1",
            "team-nlp",
            "nlp",
            "large-any",
            "gpu-h200-02",
            {"nvidia.com/gpu": 4},
            "nvidia-h200-141gb",
            job="llm-pretrain",
        ),
        pod(
            "sft-run-0",
            "team-nlp",
            "nlp",
            "large-any",
            "gpu-h100-01",
            {"nvidia.com/gpu": 8},
            "nvidia-h100-80gb",
            job="sft-run",
        ),
        pod(
            "eval-a100",
            "team-nlp",
            "nlp",
            "a100-80gb",
            "gpu-a100-01",
            {"nvidia.com/gpu": 2},
            "nvidia-a100-80gb",
        ),
        pod(
            "detector-train",
            "team-vision",
            "vision",
            "a100-80gb",
            "gpu-a100-02",
            {"nvidia.com/gpu": 4},
            "nvidia-a100-80gb",
        ),
        pod(
            "seg-legacy",
            "team-vision",
            "vision",
            "legacy-v100",
            "gpu-v100-01",
            {"nvidia.com/gpu": 2},
            "nvidia-v100-32gb",
        ),
        pod(
            "serve-mig-0",
            "team-vision",
            "vision",
            "inference-mig",
            "gpu-a100-mig-01",
            {"nvidia.com/mig-1g.10gb": 1},
            "nvidia-a100-80gb",
        ),
        pod(
            "serve-mig-1",
            "team-platform",
            "platform",
            "inference-mig",
            "gpu-a100-mig-01",
            {"nvidia.com/mig-1g.10gb": 1},
            "nvidia-a100-80gb",
        ),
        pod(
            "notebook-alice",
            "team-nlp",
            "nlp",
            "notebook-shared",
            "gpu-l4-shared-01",
            {"nvidia.com/gpu.shared": 1},
            "nvidia-l4-24gb",
        ),
        pod(
            "notebook-bob",
            "team-research",
            "research",
            "notebook-shared",
            "gpu-l4-shared-01",
            {"nvidia.com/gpu.shared": 1},
            "nvidia-l4-24gb",
        ),
        pod(
            "rocm-bench",
            "team-research",
            "research",
            "amd-mi300x",
            "gpu-mi300x-01",
            {"amd.com/gpu": 4},
            "amd-mi300x-192gb",
        ),
        pod(
            "old-job-done",
            "team-research",
            "research",
            "large-any",
            "gpu-h100-02",
            {"nvidia.com/gpu": 8},
            "nvidia-h100-80gb",
            phase="Succeeded",
        ),
    ]


def main() -> None:
    namespaces = [namespace("kube-system"), namespace("accel-system"), namespace("default"),
                  namespace("team-nlp", "nlp"), namespace("team-vision", "vision"),
                  namespace("team-research", "research"), namespace("team-platform", "platform")]
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [*nodes(), *namespaces, *pods()],
    }
    sys.stdout.write(
        "# Sample cluster snapshot (generated by examples/make_sample_cluster.py; do not edit by hand)\n"
    )
    yaml.safe_dump(doc, sys.stdout, sort_keys=False, width=200)


if __name__ == "__main__":
    main()
