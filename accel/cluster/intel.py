"""Intel detection on one node: Intel data-center GPUs (i915/xe) and Habana Gaudi.

Reads the Intel GPU plugin's `gpu.intel.com/*` labels and resources and the Habana plugin's
`habana.ai/*` (accelerators.md section 3); each reader returns one VendorPart or None when the node
shows no sign of that device family. Both report vendor `intel`.
"""

from __future__ import annotations

from accel.cluster.catalog import UNKNOWN_TYPE
from accel.cluster.products import (
    match_instance_type,
    match_product,
    parse_product,
    product_form_factor,
)
from accel.cluster.vendor_facts import (
    NodeFacts,
    VendorPart,
    label_int,
    memory_gb_from_size,
    type_memory_gb,
)

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")


def detect_intel_gpu(facts: NodeFacts) -> VendorPart | None:
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
        memory_gb=type_memory_gb(found) or memory_gb_from_size(labels.get("gpu.intel.com/memory.max")),
        form_factor=product_form_factor(parsed, found) if product else None,
        product_label=product or None,
        sharing="time-sliced" if replicas > 1 else "exclusive",
        replicas=replicas,
    )


def detect_gaudi(facts: NodeFacts) -> VendorPart | None:
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
        memory_gb=type_memory_gb(found),
        form_factor=found.form_factors[0] if found and len(found.form_factors) == 1 else None,
    )
