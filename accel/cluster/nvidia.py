"""NVIDIA detection on one node: GPU Feature Discovery and GKE/EKS labels, sharing and MIG.

Reads the labels GFD (or GKE's own device plugin) writes (accelerators.md section 1) and the
`nvidia.com/*` device-plugin resources, and returns one VendorPart or None when the node shows no
sign of NVIDIA.

Invariants:
1. Present when `nvidia.com/gpu` capacity is > 0, a label names a product or MIG profile, or a label
   says the device is present; then the part exists even if the product is unknown (type `unknown`).
2. Physical counts: capacity divided by time-slicing replicas, `nvidia.com/gpu.count` where GFD
   reports physical devices, and MIG instances folded into GPUs by `mig_gpu_count`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from accel.cluster.catalog import UNKNOWN_TYPE, AcceleratorType
from accel.cluster.products import (
    match_gke_accelerator,
    match_product,
    mig_gpu_count,
    parse_mig_profile,
    parse_product,
    product_form_factor,
)
from accel.cluster.vendor_facts import (
    NodeFacts,
    VendorPart,
    label_int,
    label_true,
    memory_gb_from_mib,
    type_memory_gb,
)

GPU_PRODUCT = "nvidia.com/gpu.product"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
EKS_ACCELERATOR = "k8s.amazonaws.com/accelerator"
GKE_PARTITION_SIZE = "cloud.google.com/gke-gpu-partition-size"  # GKE MIG profile, e.g. 1g.5gb
GKE_SHARING_STRATEGY = "cloud.google.com/gke-gpu-sharing-strategy"  # time-sharing | mps
GKE_MAX_SHARED_CLIENTS = "cloud.google.com/gke-max-shared-clients-per-gpu"
_PROFILE = r"\d{1,2}g\.\d{1,4}gb(?:[+-](?:me|gfx)){0,3}"
_MIG_LABEL = re.compile(rf"^nvidia\.com/mig-({_PROFILE})\.(count|product|replicas)$")
_MIG_RESOURCE = re.compile(rf"^nvidia\.com/mig-({_PROFILE})(\.shared)?$")


@dataclass(frozen=True)
class _Mig:
    """MIG mixed-strategy facts: per-profile allocatable units, instances, and product values."""

    allocatable: dict[str, int]
    instances: dict[str, int]
    products: tuple[str, ...]


def _nvidia_types(facts: NodeFacts, products: list[str], hint: float | None) -> list[AcceleratorType]:
    found = [
        match_product(parse_product(p), facts.catalog, vendor="nvidia", memory_hint_gb=hint) for p in products
    ]
    known = [t for t in found if t is not None]
    if not known and facts.labels.get(GKE_ACCELERATOR):
        known = [t for t in [match_gke_accelerator(facts.labels[GKE_ACCELERATOR], facts.catalog)] if t]
    if not known and facts.labels.get(EKS_ACCELERATOR):
        parsed = parse_product(facts.labels[EKS_ACCELERATOR])
        known = [t for t in [match_product(parsed, facts.catalog, vendor="nvidia", memory_hint_gb=hint)] if t]
    return list(dict.fromkeys(known))


def _mig_mixed(facts: NodeFacts, replicas: int) -> _Mig:
    labels, by_profile = facts.labels, {}
    label_counts: dict[str, int] = {}
    products: list[str] = []
    for key, value in labels.items():
        match = _MIG_LABEL.match(key) if key.startswith("nvidia.com/mig-") else None
        if match and match.group(2) == "count" and (count := label_int(value)) is not None:
            label_counts[match.group(1)] = count
        elif match and match.group(2) == "product" and value.strip():
            products.append(value.strip())
    capacity: dict[str, int] = {}
    allocatable: dict[str, int] = {}
    for name, count in facts.capacity.items():
        if match := _MIG_RESOURCE.match(name):
            capacity[match.group(1)] = capacity.get(match.group(1), 0) + count
            allocatable[match.group(1)] = allocatable.get(match.group(1), 0) + facts.allocatable.get(name, 0)
    for profile in set(label_counts) | set(capacity):
        per = label_int(labels.get(f"nvidia.com/mig-{profile}.replicas")) or replicas
        from_capacity = math.ceil(capacity.get(profile, 0) / max(per, 1))
        by_profile[profile] = label_counts.get(profile, from_capacity)
        allocatable.setdefault(profile, label_counts.get(profile, 0))
    instances = {p: n for p, n in sorted(by_profile.items()) if n > 0}
    return _Mig(
        {p: allocatable[p] for p in sorted(allocatable) if p in by_profile},
        instances,
        tuple(sorted(products)),
    )


def _nvidia_sharing(facts: NodeFacts, shared_suffix: bool, units: int) -> tuple[str, int]:
    """(sharing mode ignoring MIG, replicas) from the sharing labels, -SHARED and .shared resources.

    GFD writes `nvidia.com/gpu.sharing-strategy` and `.replicas`; GKE's own device plugin writes
    GKE_SHARING_STRATEGY and GKE_MAX_SHARED_CLIENTS instead (GKE label names UNVERIFIED in the fact sheet).
    """
    labels = facts.labels
    strategy = labels.get("nvidia.com/gpu.sharing-strategy", "").strip().lower()
    strategy = strategy or labels.get(GKE_SHARING_STRATEGY, "").strip().lower()
    replicas = (
        label_int(labels.get("nvidia.com/gpu.replicas")) or label_int(labels.get(GKE_MAX_SHARED_CLIENTS)) or 0
    )
    shared_resource = any(
        n.startswith("nvidia.com/") and n.endswith(".shared") and c > 0 for n, c in facts.capacity.items()
    )
    if strategy == "mps":
        mode = "mps"
    elif strategy in ("time-slicing", "time-sharing") or shared_suffix or shared_resource or replicas > 1:
        mode = "time-sliced"
    else:
        return "exclusive", 1
    if replicas < 1:
        devices = label_int(labels.get("nvidia.com/gpu.count")) or 0
        replicas = units // devices if devices and units % devices == 0 and units >= devices else 1
    return mode, max(replicas, 1)


def _single_profile(labels: Mapping[str, str], product_profile: str | None) -> str | None:
    """The MIG single-strategy profile: GFD's `-MIG-<p>` product suffix, else GKE's partition size."""
    if product_profile:
        return product_profile
    gke = labels.get(GKE_PARTITION_SIZE, "").strip().lower()
    return gke if parse_mig_profile(gke) else None


def _nvidia_gpus(facts: NodeFacts, mode: str, units: int, replicas: int) -> int:
    """Physical GPUs when no MIG: GFD's device count (replica-free) when shared, else the capacity."""
    count_label = label_int(facts.labels.get("nvidia.com/gpu.count"))
    if mode != "exclusive":
        return count_label or math.ceil(units / replicas)
    return units or count_label or 0


def detect_nvidia(facts: NodeFacts) -> VendorPart | None:
    labels, cap = facts.labels, facts.capacity
    units = cap.get("nvidia.com/gpu", 0) + cap.get("nvidia.com/gpu.shared", 0)
    raw = labels.get(GPU_PRODUCT, "").strip()
    parsed = parse_product(raw)
    mode, replicas = _nvidia_sharing(facts, parsed.shared, units)
    mig = _mig_mixed(facts, replicas)
    present = label_true(labels.get("nvidia.com/gpu.present")) or bool(labels.get(GKE_ACCELERATOR))
    if not (raw or mig.products or mig.instances or units or present):
        return None
    single = None if mig.instances else _single_profile(labels, parsed.mig_profile)
    hint = None if single else memory_gb_from_mib(labels.get("nvidia.com/gpu.memory"))
    found = _nvidia_types(facts, [p for p in (raw, *mig.products) if p], hint)
    primary = found[0] if found else None
    slices: dict[str, int] = {}
    if single:
        instances = label_int(labels.get("nvidia.com/gpu.count")) or math.ceil(units / replicas)
        alloc = facts.allocatable
        slices = {single: alloc.get("nvidia.com/gpu", 0) + alloc.get("nvidia.com/gpu.shared", 0)}
        gpus = mig_gpu_count({single: instances}, primary)
    elif mig.instances:
        slices = mig.allocatable
        gpus = math.ceil(units / replicas) + mig_gpu_count(mig.instances, primary)
    else:
        gpus = _nvidia_gpus(facts, mode, units, replicas)
    return VendorPart(
        vendor="nvidia",
        types=tuple(t.name for t in found) or (UNKNOWN_TYPE,),
        gpu_count=gpus,
        memory_gb=type_memory_gb(primary) or hint,
        form_factor=product_form_factor(parsed, primary),
        product_label=raw or (mig.products[0] if mig.products else None),
        sharing="mig" if single or mig.instances else mode,
        replicas=replicas,
        mig_strategy=("single" if single else "mixed") if single or mig.instances else None,
        mig_slices=slices,
    )
