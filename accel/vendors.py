"""Per-vendor accelerator detection on one node: NVIDIA, AMD, Intel GPU, Intel Gaudi.

`detect_vendors` runs each vendor's reader (accel.nvidia, accel.amd, accel.intel) over the labels
that vendor's operator writes (accelerators.md sections 1-3) and the node's device-plugin resources;
each returns one VendorPart or None when the node shows no sign of that vendor.
`accel.labels.normalise_node` combines the parts. The shared inputs, output and value parsers live in
accel.vendor_facts and are re-exported here.

Invariants:
1. Readers never raise: counts come from `safe_count`/`label_int`, which turn garbage into 0/None.
2. A vendor is present when its resource capacity is > 0 or a label names a product or says the
   device is present; then the part exists even if the product is unknown (type `unknown`).
3. Physical counts: capacity divided by time-slicing replicas, `nvidia.com/gpu.count` where GFD
   reports physical devices, and MIG instances folded into GPUs by `mig_gpu_count`.
"""

from __future__ import annotations

from accel.amd import AMD_DEVICE_MODELS, detect_amd
from accel.intel import INSTANCE_TYPE_LABELS, detect_gaudi, detect_intel_gpu
from accel.nvidia import (
    EKS_ACCELERATOR,
    GKE_ACCELERATOR,
    GKE_MAX_SHARED_CLIENTS,
    GKE_PARTITION_SIZE,
    GKE_SHARING_STRATEGY,
    GPU_PRODUCT,
    detect_nvidia,
)
from accel.vendor_facts import (
    MAX_DEVICE_UNITS,
    NodeFacts,
    VendorPart,
    label_int,
    memory_gb_from_mib,
    memory_gb_from_size,
    safe_count,
)

__all__ = [
    "AMD_DEVICE_MODELS",
    "EKS_ACCELERATOR",
    "GKE_ACCELERATOR",
    "GKE_MAX_SHARED_CLIENTS",
    "GKE_PARTITION_SIZE",
    "GKE_SHARING_STRATEGY",
    "GPU_PRODUCT",
    "INSTANCE_TYPE_LABELS",
    "MAX_DEVICE_UNITS",
    "NodeFacts",
    "VendorPart",
    "detect_vendors",
    "label_int",
    "memory_gb_from_mib",
    "memory_gb_from_size",
    "safe_count",
]


def detect_vendors(facts: NodeFacts) -> list[VendorPart]:
    """Every vendor's part found on the node, in the fixed order NVIDIA, AMD, Intel GPU, Gaudi."""
    parts = (detect_nvidia(facts), detect_amd(facts), detect_intel_gpu(facts), detect_gaudi(facts))
    return [part for part in parts if part is not None]
