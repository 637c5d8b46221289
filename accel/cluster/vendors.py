"""Per-vendor accelerator detection on one node: NVIDIA, AMD, Intel GPU, Intel Gaudi.

`detect_vendors` runs each vendor's reader (accel.cluster.nvidia, accel.cluster.amd,
accel.cluster.intel) over the labels that vendor's operator writes (accelerators.md sections 1-3) and the
node's device-plugin resources;
each returns one VendorPart or None when the node shows no sign of that vendor.
`accel.cluster.labels.normalise_node` combines the parts. The shared inputs, output and value
parsers live in accel.cluster.vendor_facts.

Invariants:
1. Readers never raise: counts come from `safe_count`/`label_int`, which turn garbage into 0/None.
2. A vendor is present when its resource capacity is > 0 or a label names a product or says the
   device is present; then the part exists even if the product is unknown (type `unknown`).
3. Physical counts: capacity divided by time-slicing replicas, `nvidia.com/gpu.count` where GFD
   reports physical devices, and MIG instances folded into GPUs by `mig_gpu_count`.
"""

from __future__ import annotations

from accel.cluster.amd import detect_amd
from accel.cluster.intel import detect_gaudi, detect_intel_gpu
from accel.cluster.nvidia import (
    detect_nvidia,
)
from accel.cluster.vendor_facts import (
    NodeFacts,
    VendorPart,
)


def detect_vendors(facts: NodeFacts) -> list[VendorPart]:
    """Every vendor's part found on the node, in the fixed order NVIDIA, AMD, Intel GPU, Gaudi."""
    parts = (detect_nvidia(facts), detect_amd(facts), detect_intel_gpu(facts), detect_gaudi(facts))
    return [part for part in parts if part is not None]
