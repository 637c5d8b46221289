"""AMD detection on one node: the AMD GPU operator's node labeller and `amd.com/gpu` resources.

Reads the labeller's properties in both label forms (accelerators.md section 2) and returns one
VendorPart or None when the node shows no sign of AMD. Present when `amd.com/gpu` capacity is > 0,
a label names a product or known device id, or node feature discovery says an AMD GPU is present.
"""

from __future__ import annotations

from collections.abc import Mapping

from accel.cluster.catalog import UNKNOWN_TYPE
from accel.cluster.products import match_product, parse_product, product_form_factor
from accel.cluster.vendor_facts import (
    NodeFacts,
    VendorPart,
    label_true,
    memory_gb_from_size,
    type_memory_gb,
)

# amd.com/gpu.device-id values: 74a1 is in the fact sheet (MI300X); the other two are UNVERIFIED.
AMD_DEVICE_MODELS: Mapping[str, str] = {"74a1": "MI300X", "74a5": "MI325X", "740f": "MI210"}


def _amd_property(labels: Mapping[str, str], prop: str) -> list[str]:
    """Values of an AMD labeller property in both forms: `amd.com/gpu.<p>=v` and `beta...<p>.v=1`."""
    values: list[str] = []
    for prefix in ("amd.com/gpu.", "beta.amd.com/gpu."):
        if labels.get(prefix + prop, "").strip():
            values.append(labels[prefix + prop].strip())
        values.extend(k[len(prefix + prop) + 1 :] for k in sorted(labels) if k.startswith(f"{prefix}{prop}."))
    return [v for v in values if v]


def detect_amd(facts: NodeFacts) -> VendorPart | None:
    labels = {k: v for k, v in facts.labels.items() if k.startswith(("amd.com/", "beta.amd.com/"))}
    units = facts.capacity.get("amd.com/gpu", 0)
    if not (units or labels or label_true(facts.labels.get("feature.node.kubernetes.io/amd-gpu"))):
        return None
    names = _amd_property(labels, "product-name")
    device_ids = [
        AMD_DEVICE_MODELS[d.lower()]
        for d in _amd_property(labels, "device-id")
        if d.lower() in AMD_DEVICE_MODELS
    ]
    if not (
        units or names or device_ids or label_true(facts.labels.get("feature.node.kubernetes.io/amd-gpu"))
    ):
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
        memory_gb=type_memory_gb(found) or hint,
        form_factor=product_form_factor(parse_product(names[0]), found) if names else None,
        product_label=names[0] if names else None,
    )
