"""Per-vendor accelerator detection on one node: NVIDIA, AMD, Intel GPU, Intel Gaudi.

Each `_<vendor>` reader looks at the labels that vendor's operator writes (accelerators.md
sections 1-3) and the node's device-plugin resources, and returns one VendorPart or None when the
node shows no sign of that vendor. `accel.labels.normalise_node` combines the parts.

Invariants:
1. Readers never raise: counts come from `safe_count`/`label_int`, which turn garbage into 0/None.
2. A vendor is present when its resource capacity is > 0 or a label names a product or says the
   device is present; then the part exists even if the product is unknown (type `unknown`).
3. Physical counts: capacity divided by time-slicing replicas, `nvidia.com/gpu.count` where GFD
   reports physical devices, and MIG instances folded into GPUs by `mig_gpu_count`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from accel.catalog import UNKNOWN_TYPE, AcceleratorType, Catalog
from accel.products import (
    match_gke_accelerator,
    match_instance_type,
    match_product,
    mig_gpu_count,
    parse_mig_profile,
    parse_product,
    product_form_factor,
)
from accel.quantity import QuantityError, parse_quantity

MAX_DEVICE_UNITS = 1_000_000  # larger "counts" are garbage, not hardware
GPU_PRODUCT = "nvidia.com/gpu.product"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
EKS_ACCELERATOR = "k8s.amazonaws.com/accelerator"
GKE_PARTITION_SIZE = "cloud.google.com/gke-gpu-partition-size"  # GKE MIG profile, e.g. 1g.5gb
GKE_SHARING_STRATEGY = "cloud.google.com/gke-gpu-sharing-strategy"  # time-sharing | mps
GKE_MAX_SHARED_CLIENTS = "cloud.google.com/gke-max-shared-clients-per-gpu"
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
_PROFILE = r"\d{1,2}g\.\d{1,4}gb(?:[+-](?:me|gfx)){0,3}"
_MIG_LABEL = re.compile(rf"^nvidia\.com/mig-({_PROFILE})\.(count|product|replicas)$")
_MIG_RESOURCE = re.compile(rf"^nvidia\.com/mig-({_PROFILE})(\.shared)?$")
# amd.com/gpu.device-id values: 74a1 is in the fact sheet (MI300X); the other two are UNVERIFIED.
AMD_DEVICE_MODELS: Mapping[str, str] = {"74a1": "MI300X", "74a5": "MI325X", "740f": "MI210"}


@dataclass(frozen=True)
class NodeFacts:
    """One node's inputs, already cleaned: str labels, integer resource counts."""

    labels: Mapping[str, str]
    capacity: Mapping[str, int]  # accelerator and fabric resources, malformed = 0
    allocatable: Mapping[str, int]  # accelerator resources only (capacity where allocatable lacks one)
    catalog: Catalog


@dataclass(frozen=True)
class VendorPart:
    """What one vendor's devices on a node amount to."""

    vendor: str
    types: tuple[str, ...]
    gpu_count: int
    memory_gb: float | None = None
    form_factor: str | None = None
    product_label: str | None = None
    sharing: str = "exclusive"  # accel.labels.Sharing values
    replicas: int = 1
    mig_strategy: str | None = None  # "single" | "mixed" | None
    mig_slices: Mapping[str, int] = field(default_factory=dict)


def detect_vendors(facts: NodeFacts) -> list[VendorPart]:
    parts = (_nvidia(facts), _amd(facts), _intel_gpu(facts), _gaudi(facts))
    return [part for part in parts if part is not None]


# ------------------------------------------------------------------------------ value parsing


def safe_count(value: object) -> int:
    """A device count from a quantity; 0 for anything malformed, negative, fractional or absurd."""
    try:
        quantity = parse_quantity(value)
        if not quantity.is_finite() or quantity < 0 or quantity > MAX_DEVICE_UNITS:
            return 0
        return int(quantity) if quantity == quantity.to_integral_value() else 0
    except (QuantityError, ArithmeticError, ValueError, TypeError):
        return 0


def label_int(value: str | None) -> int | None:
    """A small non-negative ASCII integer label value (`"8"`), else None."""
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if re.fullmatch(r"[0-9]{1,7}", text) else None


def memory_gb_from_mib(value: str | None) -> float | None:
    """Per-device GB (1 decimal) from a MiB label such as `nvidia.com/gpu.memory` (`39538` -> 38.6)."""
    mib = label_int(value)
    return round(mib / 1024, 1) if mib else None


def memory_gb_from_size(value: str | None) -> float | None:
    """GB from `192G`, `64Gi`, `65536M`, `1T`, or plain bytes (`gpu.intel.com/memory.max`)."""
    text = value.strip() if isinstance(value, str) else ""
    match = re.fullmatch(r"([0-9]{1,7})\s*([MGT])i?B?", text, flags=re.IGNORECASE)
    if match:
        scale = {"M": Decimal(1) / 1024, "G": Decimal(1), "T": Decimal(1024)}[match.group(2).upper()]
        return float(round(Decimal(match.group(1)) * scale, 1)) or None
    if re.fullmatch(r"[0-9]{1,16}", text) and int(text) >= 2**30:
        return round(int(text) / 2**30, 1)
    return None


def _true(value: str | None) -> bool:
    return isinstance(value, str) and value.strip().lower() == "true"


def _type_memory(accel_type: AcceleratorType | None) -> float | None:
    return accel_type.memory_gb if accel_type is not None and accel_type.memory_gb > 0 else None


# ------------------------------------------------------------------------------ NVIDIA


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


def _nvidia(facts: NodeFacts) -> VendorPart | None:
    labels, cap = facts.labels, facts.capacity
    units = cap.get("nvidia.com/gpu", 0) + cap.get("nvidia.com/gpu.shared", 0)
    raw = labels.get(GPU_PRODUCT, "").strip()
    parsed = parse_product(raw)
    mode, replicas = _nvidia_sharing(facts, parsed.shared, units)
    mig = _mig_mixed(facts, replicas)
    present = _true(labels.get("nvidia.com/gpu.present")) or bool(labels.get(GKE_ACCELERATOR))
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
        memory_gb=_type_memory(primary) or hint,
        form_factor=product_form_factor(parsed, primary),
        product_label=raw or (mig.products[0] if mig.products else None),
        sharing="mig" if single or mig.instances else mode,
        replicas=replicas,
        mig_strategy=("single" if single else "mixed") if single or mig.instances else None,
        mig_slices=slices,
    )


# ------------------------------------------------------------------------------ AMD / Intel / Gaudi


def _amd_property(labels: Mapping[str, str], prop: str) -> list[str]:
    """Values of an AMD labeller property in both forms: `amd.com/gpu.<p>=v` and `beta...<p>.v=1`."""
    values: list[str] = []
    for prefix in ("amd.com/gpu.", "beta.amd.com/gpu."):
        if labels.get(prefix + prop, "").strip():
            values.append(labels[prefix + prop].strip())
        values.extend(k[len(prefix + prop) + 1 :] for k in sorted(labels) if k.startswith(f"{prefix}{prop}."))
    return [v for v in values if v]


def _amd(facts: NodeFacts) -> VendorPart | None:
    labels = {k: v for k, v in facts.labels.items() if k.startswith(("amd.com/", "beta.amd.com/"))}
    units = facts.capacity.get("amd.com/gpu", 0)
    if not (units or labels or _true(facts.labels.get("feature.node.kubernetes.io/amd-gpu"))):
        return None
    names = _amd_property(labels, "product-name")
    device_ids = [
        AMD_DEVICE_MODELS[d.lower()]
        for d in _amd_property(labels, "device-id")
        if d.lower() in AMD_DEVICE_MODELS
    ]
    if not (units or names or device_ids or _true(facts.labels.get("feature.node.kubernetes.io/amd-gpu"))):
        return None
    vram = _amd_property(labels, "vram")
    hint = memory_gb_from_size(vram[0]) if vram else None
    found = next(
        (
            t
            for n in (*names, *device_ids)
            if (t := match_product(parse_product(n), facts.catalog, vendor="amd", memory_hint_gb=hint))
        ),
        None,
    )
    return VendorPart(
        vendor="amd",
        types=(found.name if found else UNKNOWN_TYPE,),
        gpu_count=units,
        memory_gb=_type_memory(found) or hint,
        form_factor=product_form_factor(parse_product(names[0]), found) if names else None,
        product_label=names[0] if names else None,
    )


def _intel_gpu(facts: NodeFacts) -> VendorPart | None:
    labels = facts.labels
    units = facts.capacity.get("gpu.intel.com/i915", 0) + facts.capacity.get("gpu.intel.com/xe", 0)
    product = labels.get("gpu.intel.com/product", "").strip()
    devices = label_int(labels.get("gpu.intel.com/device.count")) or 0
    if not (units or product or devices):
        return None
    parsed = parse_product(product)
    found = match_product(parsed, facts.catalog, vendor="intel") if product else None
    replicas = units // devices if devices and units > devices and units % devices == 0 else 1
    return VendorPart(
        vendor="intel",
        types=(found.name if found else UNKNOWN_TYPE,),
        gpu_count=devices or units,
        memory_gb=_type_memory(found) or memory_gb_from_size(labels.get("gpu.intel.com/memory.max")),
        form_factor=product_form_factor(parsed, found) if product else None,
        product_label=product or None,
        sharing="time-sliced" if replicas > 1 else "exclusive",
        replicas=replicas,
    )


def _gaudi(facts: NodeFacts) -> VendorPart | None:
    """Gaudi: no label names the generation, so only the instance type can (catalog instanceTypes)."""
    units = facts.capacity.get("habana.ai/gaudi", 0)
    devices = label_int(facts.labels.get("habana.ai/device.count")) or 0
    if not (units or devices):
        return None
    instance = next((facts.labels[k] for k in INSTANCE_TYPE_LABELS if facts.labels.get(k)), "")
    found = match_instance_type(instance, facts.catalog, vendor="intel") if instance else None
    if found is not None and found.resource_name != "habana.ai/gaudi":
        found = None
    return VendorPart(
        vendor="intel",
        types=(found.name if found else UNKNOWN_TYPE,),
        gpu_count=units or devices,
        memory_gb=_type_memory(found),
        form_factor=found.form_factors[0] if found and len(found.form_factors) == 1 else None,
    )
