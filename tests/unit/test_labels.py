"""Label normalisation: real operator label values and whole nodes -> canonical accelerator facts.

Product values come from the fact sheet's table 1.4 (R = real cluster, D = NVIDIA docs, C = public
manifests), plus near-miss negatives that broke other schedulers (L40S read as L4, H20 as H200).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.labels import (
    DEFAULT_TOPOLOGY_KEYS,
    MigLayout,
    NodeAccelerators,
    Sharing,
    normalise_node,
    normalise_product,
)
from accel.cluster.products import mig_gpu_count, mig_instances_per_gpu

CATALOG = load_builtin_catalog()

# (label value, canonical type, form factor, MIG profile, shared)
PRODUCTS: list[Any] = [
    # --- fact sheet table 1.4, rows 1-44 -------------------------------------------------------
    pytest.param("Tesla-T4", "nvidia-t4-16gb", "pcie", None, False, id="R1-tesla-t4"),
    pytest.param("Tesla-T4-SHARED", "nvidia-t4-16gb", "pcie", None, True, id="C2-t4-shared"),
    pytest.param("Tesla-V100-SXM2-16GB", "nvidia-v100-16gb", "sxm", None, False, id="R3-v100-sxm2-16"),
    pytest.param("Tesla-V100-SXM2-32GB", "nvidia-v100-32gb", "sxm", None, False, id="R4-v100-sxm2-32"),
    pytest.param("Tesla-V100-PCIE-16GB", "nvidia-v100-16gb", "pcie", None, False, id="R5-v100-pcie-16"),
    pytest.param("Tesla-P100-SXM2-16GB", "nvidia-p100-16gb", "sxm", None, False, id="C6-p100"),
    pytest.param("NVIDIA-A10", "nvidia-a10-24gb", "pcie", None, False, id="R7-a10"),
    pytest.param("NVIDIA-A10G", "nvidia-a10g-24gb", "pcie", None, False, id="R8-a10g-not-a10"),
    pytest.param("NVIDIA-A10G-SHARED", "nvidia-a10g-24gb", "pcie", None, True, id="C9-a10g-shared"),
    pytest.param("NVIDIA-A30", "nvidia-a30-24gb", "pcie", None, False, id="C10-a30"),
    pytest.param("NVIDIA-A40", "nvidia-a40-48gb", "pcie", None, False, id="R11-a40"),
    pytest.param("NVIDIA-A2", "nvidia-a2-16gb", "pcie", None, False, id="R12-a2"),
    pytest.param("A100-SXM4-40GB", "nvidia-a100-40gb", "sxm", None, False, id="D13-a100-old-driver"),
    pytest.param("NVIDIA-A100-SXM4-40GB", "nvidia-a100-40gb", "sxm", None, False, id="C14-a100-sxm4-40"),
    pytest.param("NVIDIA-A100-PCIE-40GB", "nvidia-a100-40gb", "pcie", None, False, id="R15-a100-upper-pcie"),
    pytest.param("NVIDIA-A100-SXM4-80GB", "nvidia-a100-80gb", "sxm", None, False, id="R16-a100-sxm4-80"),
    pytest.param(
        "NVIDIA-A100-80GB-PCIe", "nvidia-a100-80gb", "pcie", None, False, id="R17-a100-memory-first"
    ),
    pytest.param(
        "NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "nvidia-a100-80gb", "pcie", "1g.10gb", False, id="R18-a100-mig"
    ),
    pytest.param(
        "A100-SXM4-40GB-MIG-1g.5gb", "nvidia-a100-40gb", "sxm", "1g.5gb", False, id="D19-mig-single"
    ),
    pytest.param(
        "A100-SXM4-40GB-MIG-1g.5gb-SHARED", "nvidia-a100-40gb", "sxm", "1g.5gb", True, id="D20-mig-shared"
    ),
    pytest.param("NVIDIA-A800-SXM4-80GB", "nvidia-a800-80gb", "sxm", None, False, id="C21-a800"),
    pytest.param("NVIDIA-L4", "nvidia-l4-24gb", "pcie", None, False, id="R22-l4"),
    pytest.param("NVIDIA-L40", "nvidia-l40-48gb", "pcie", None, False, id="R23-l40-not-l4"),
    pytest.param("NVIDIA-L40S", "nvidia-l40s-48gb", "pcie", None, False, id="R24-l40s-not-l4-or-l40"),
    pytest.param("NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb", "sxm", None, False, id="R25-h100-hbm3-is-sxm"),
    pytest.param(
        "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "nvidia-h100-80gb", "sxm", "1g.10gb", False, id="D26-h100-mig-1g"
    ),
    pytest.param(
        "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb", "nvidia-h100-80gb", "sxm", "3g.40gb", False, id="D27-h100-mig-3g"
    ),
    pytest.param("NVIDIA-H100-PCIe", "nvidia-h100-80gb", "pcie", None, False, id="C28-h100-pcie-no-memory"),
    pytest.param("NVIDIA-H100-NVL", "nvidia-h100-94gb", "nvl", None, False, id="C29-h100-nvl-is-94gb"),
    pytest.param("NVIDIA-H200", "nvidia-h200-141gb", None, None, False, id="C30-h200"),
    pytest.param("NVIDIA-H200-NVL", "nvidia-h200-141gb", "nvl", None, False, id="R31-h200-nvl"),
    pytest.param(
        "NVIDIA-GH200-480GB", "nvidia-gh200-96gb", "superchip", None, False, id="R32-gh200-grace-memory"
    ),
    pytest.param("NVIDIA-GB200", "nvidia-gb200-186gb", "superchip", None, False, id="C33-gb200"),
    pytest.param("NVIDIA-B200", "nvidia-b200-180gb", "sxm", None, False, id="C34-b200"),
    pytest.param("NVIDIA-GB10", "nvidia-gb10-128gb", "superchip", None, False, id="C35-gb10"),
    pytest.param("NVIDIA-RTX-A6000", "nvidia-rtx-a6000-48gb", "pcie", None, False, id="R36-rtx-a6000"),
    pytest.param("NVIDIA-RTX-A5000", "nvidia-rtx-a5000-24gb", "pcie", None, False, id="R37-rtx-a5000"),
    pytest.param("NVIDIA-RTX-A4000", "nvidia-rtx-a4000-16gb", "pcie", None, False, id="R38-rtx-a4000"),
    pytest.param(
        "NVIDIA-RTX-5000-Ada-Generation",
        "nvidia-rtx-5000-ada-32gb",
        "pcie",
        None,
        False,
        id="R39-rtx-5000-ada",
    ),
    pytest.param(
        "NVIDIA-RTX-4000-Ada-Generation",
        "nvidia-rtx-4000-ada-20gb",
        "pcie",
        None,
        False,
        id="R40-rtx-4000-ada",
    ),
    pytest.param(
        "NVIDIA-RTX-PRO-6000-Blackwell-Max-Q-Workstation-Edition",
        "nvidia-rtx-pro-6000-96gb",
        "pcie",
        None,
        False,
        id="R41-rtx-pro-6000-longest",
    ),
    pytest.param("NVIDIA-GeForce-RTX-4090", "nvidia-rtx-4090-24gb", "pcie", None, False, id="R42-rtx-4090"),
    pytest.param("NVIDIA-GeForce-RTX-3090", "nvidia-rtx-3090-24gb", "pcie", None, False, id="R43-rtx-3090"),
    pytest.param(
        "NVIDIA-GeForce-RTX-2080-Ti", "nvidia-rtx-2080ti-11gb", "pcie", None, False, id="R44-2080-ti"
    ),
    # --- rows 45-48: real, but not in the catalog -> unknown -----------------------------------
    pytest.param("NVIDIA-GeForce-GTX-1080-Ti", "unknown", None, None, False, id="R45-gtx-1080-ti-unknown"),
    pytest.param("NVIDIA-GeForce-GTX-1080", "unknown", None, None, False, id="R45-gtx-1080-unknown"),
    pytest.param("NVIDIA-TITAN-RTX", "unknown", None, None, False, id="R46-titan-rtx-unknown"),
    pytest.param("NVIDIA-TITAN-Xp", "unknown", None, None, False, id="R46-titan-xp-unknown"),
    pytest.param("Quadro-RTX-6000", "unknown", None, None, False, id="R47-quadro-rtx-6000-not-6000-ada"),
    pytest.param("Quadro-M4000", "unknown", None, None, False, id="R47-quadro-m4000-unknown"),
    pytest.param("GeForce-GT-710", "unknown", None, None, False, id="D48-gt-710-unknown"),
    # --- near misses and spelling variants ------------------------------------------------------
    pytest.param("NVIDIA-H20", "nvidia-h20-96gb", "sxm", None, False, id="h20-is-not-h200"),
    pytest.param("NVIDIA-H800", "nvidia-h800-80gb", None, None, False, id="h800-is-not-h100"),
    pytest.param("NVIDIA-L20", "nvidia-l20-48gb", "pcie", None, False, id="l20-is-not-l4"),
    pytest.param("NVIDIA-GH200-144G-HBM3e", "nvidia-gh200-144gb", "superchip", None, False, id="gh200-144g"),
    pytest.param("nvidia-h100-pcie", "nvidia-h100-80gb", "pcie", None, False, id="lower-case-value"),
    pytest.param("NVIDIA-H100-PCIE", "nvidia-h100-80gb", "pcie", None, False, id="upper-case-pcie"),
    pytest.param(
        "NVIDIA-H100-PCIe-MIG-1g.10gb", "nvidia-h100-80gb", "pcie", "1g.10gb", False, id="h100-pcie-mig"
    ),
    pytest.param(
        "NVIDIA-H100-NVL-MIG-1g.12gb+me", "nvidia-h100-94gb", "nvl", "1g.12gb+me", False, id="h100-nvl-mig-me"
    ),
    pytest.param(
        "NVIDIA-H200-MIG-1g.18gb-SHARED", "nvidia-h200-141gb", None, "1g.18gb", True, id="h200-mig-shared"
    ),
    pytest.param("Tesla-V100S-PCIE-32GB", "nvidia-v100-32gb", "pcie", None, False, id="v100s-listed-label"),
    pytest.param(
        "NVIDIA-A100-SXM4-64GB", "unknown", "sxm", None, False, id="unknown-memory-variant-not-guessed"
    ),
    pytest.param("NVIDIA-H2000", "unknown", None, None, False, id="longer-model-token-no-prefix-match"),
    pytest.param(
        "NVIDIA-L4-Foo-SHARED", "nvidia-l4-24gb", "pcie", None, True, id="trailing-tokens-after-model-ignored"
    ),
    pytest.param("", "unknown", None, None, False, id="empty"),
    pytest.param("-MIG-1g.5gb", "unknown", None, "1g.5gb", False, id="suffix-only"),
    # --- AMD and Intel product names --------------------------------------------------------------
    pytest.param("AMD_Instinct_MI300X_OAM", "amd-mi300x-192gb", "oam", None, False, id="amd-mi300x-oam"),
    pytest.param("AMD_Instinct_MI325_OAM", "amd-mi325x-256gb", "oam", None, False, id="amd-mi325-oam"),
    pytest.param("AMD-MI300X-192G", "amd-mi300x-192gb", "oam", None, False, id="amd-fixture-spelling"),
    pytest.param("AMD_Instinct_MI250X", "amd-mi250x-128gb", "oam", None, False, id="amd-mi250x"),
    pytest.param("AMD_Instinct_MI210", "amd-mi210-64gb", "pcie", None, False, id="amd-mi210"),
    pytest.param("AMD_Radeon_780M_Graphics", "unknown", None, None, False, id="amd-igpu-unknown"),
    pytest.param("Max_1550", "intel-max-1550-128gb", "oam", None, False, id="intel-max-1550"),
    pytest.param("Max_1100", "intel-max-1100-48gb", "pcie", None, False, id="intel-max-1100"),
    pytest.param("Flex_170", "unknown", None, None, False, id="intel-flex-unknown"),
]


@pytest.mark.parametrize(("value", "accel_type", "form", "mig", "shared"), PRODUCTS)
def test_normalise_product(value, accel_type, form, mig, shared):
    match = normalise_product(value, CATALOG)
    assert (match.accelerator_type, match.form_factor, match.mig_profile, match.shared) == (
        accel_type,
        form,
        mig,
        shared,
    )


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        pytest.param("NVIDIA-A100-SXM4", 38.6, "nvidia-a100-40gb", id="a100-no-memory-40gb-by-nvml-size"),
        pytest.param("NVIDIA-A100-SXM4", 79.2, "nvidia-a100-80gb", id="a100-no-memory-80gb-by-nvml-size"),
        pytest.param("NVIDIA-A100-SXM4", None, "nvidia-a100-40gb", id="a100-no-hint-first-listed-default"),
        pytest.param("NVIDIA-A100-SXM4", 60.0, "nvidia-a100-40gb", id="hint-out-of-tolerance-ignored"),
        pytest.param("NVIDIA-GH200", 140.5, "nvidia-gh200-144gb", id="gh200-by-memory"),
        pytest.param("NVIDIA-A100-SXM4-80GB", 38.6, "nvidia-a100-80gb", id="name-beats-hint"),
    ],
)
def test_memory_hint_breaks_ties_only(value, hint, expected):
    assert normalise_product(value, CATALOG, memory_hint_gb=hint).accelerator_type == expected


def test_vendor_filter():
    assert normalise_product("NVIDIA-A100-SXM4-80GB", CATALOG, vendor="amd").accelerator_type == "unknown"
    assert normalise_product("Max_1550", CATALOG, vendor="intel").accelerator_type == "intel-max-1550-128gb"


@pytest.mark.parametrize(
    ("profile", "type_name", "per_gpu"),
    [
        pytest.param("1g.10gb", "nvidia-a100-80gb", 7, id="a100-80-1g10"),
        pytest.param("1g.20gb", "nvidia-a100-80gb", 4, id="a100-80-1g20"),
        pytest.param("2g.20gb", "nvidia-h100-80gb", 3, id="h100-2g20"),
        pytest.param("3g.40gb", "nvidia-h100-80gb", 2, id="h100-3g40"),
        pytest.param("7g.80gb", "nvidia-h100-80gb", 1, id="h100-7g80"),
        pytest.param("1g.10gb", "nvidia-a100-40gb", 4, id="a100-40-1g10"),
        pytest.param("1g.24gb", "nvidia-h100-94gb", 4, id="h100-nvl-1g24"),
        pytest.param("1g.35gb", "nvidia-h200-141gb", 4, id="h200-1g35"),
        pytest.param("1g.6gb", "nvidia-a30-24gb", 4, id="a30-1g6"),
        pytest.param("2g.12gb", "nvidia-a30-24gb", 2, id="a30-2g12"),
        pytest.param("2g.48gb", "nvidia-rtx-pro-6000-96gb", 2, id="rtx-pro-2g48"),
        pytest.param("garbage", "nvidia-h100-80gb", 1, id="malformed-is-one"),
    ],
)
def test_mig_instances_per_gpu_matches_mig_parted(profile, type_name, per_gpu):
    assert mig_instances_per_gpu(profile, CATALOG[type_name]) == per_gpu


def test_mig_gpu_count_for_balanced_mix():
    # all-balanced on 8 x A100-80GB: 2x 1g.10gb + 1x 2g.20gb + 1x 3g.40gb per GPU
    slices = {"1g.10gb": 16, "2g.20gb": 8, "3g.40gb": 8}
    assert mig_gpu_count(slices, CATALOG["nvidia-a100-80gb"]) == 8


# ---------------------------------------------------------------------------------- whole nodes


def make_node(
    labels: dict[str, str] | None = None,
    capacity: dict[str, str] | None = None,
    allocatable: dict[str, str] | None = None,
) -> NodeAccelerators:
    capacity = {"cpu": "96", "memory": "1Ti", **(capacity or {})}
    return normalise_node(
        labels or {}, capacity, allocatable if allocatable is not None else capacity, CATALOG
    )


FACTS: dict[str, Any] = {
    "type_set": lambda n: set(n.types),
    "leaf_path": lambda n: n.topology.path("leaf"),
    "hostname": lambda n: n.topology.hostname,
    "rdma": lambda n: n.topology.rdma,
    "clique": lambda n: n.topology.clique,
}
GPU = {"nvidia.com/gpu": "1"}
H100_TOPOLOGY = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.count": "8",
    "nvidia.com/gpu.memory": "81559",
    "topology.kubernetes.io/zone": "us-east-1a",
    "network.topology.nvidia.com/spine": "spine-2",
    "network.topology.nvidia.com/leaf": "leaf-7",
    "kubernetes.io/hostname": "gpu-01",
    "nvidia.com/gpu.clique": "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1",
    "feature.node.kubernetes.io/custom-rdma.available": "true",
}

# (node labels, capacity, allocatable (None: = capacity), expected facts), one row per node shape.
NODES: list[Any] = [
    # --- NVIDIA: exclusive, time-slicing, MPS ----------------------------------------------------
    pytest.param(
        H100_TOPOLOGY,
        {"nvidia.com/gpu": "8"},
        None,
        {
            "types": ("nvidia-h100-80gb",),
            "vendor": "nvidia",
            "gpu_count": 8,
            "memory_gb": 80,
            "form_factor": "sxm",
            "sharing": Sharing.EXCLUSIVE,
            "replicas": 1,
            "mig": None,
            "resources": {"nvidia.com/gpu": 8},
            "leaf_path": (None, "us-east-1a", None, "spine-2", "leaf-7"),
            "hostname": "gpu-01",
            "rdma": True,
            "clique": "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1",
        },
        id="eight-h100-exclusive-with-topology",
    ),
    pytest.param(
        {
            "nvidia.com/gpu.product": "Tesla-T4-SHARED",
            "nvidia.com/gpu.count": "4",
            "nvidia.com/gpu.replicas": "4",
            "nvidia.com/gpu.sharing-strategy": "time-slicing",
        },
        {"nvidia.com/gpu": "16"},
        None,
        {
            "types": ("nvidia-t4-16gb",),
            "gpu_count": 4,
            "sharing": Sharing.TIME_SLICED,
            "replicas": 4,
            "resources": {"nvidia.com/gpu": 16},
        },
        id="time-sliced-with-shared-suffix",
    ),
    pytest.param(
        {"nvidia.com/gpu.product": "NVIDIA-A10G", "nvidia.com/gpu.replicas": "10"},
        {"nvidia.com/gpu.shared": "80"},
        {"nvidia.com/gpu.shared": "78"},
        {
            "types": ("nvidia-a10g-24gb",),
            "gpu_count": 8,
            "sharing": Sharing.TIME_SLICED,
            "replicas": 10,
            "resources": {"nvidia.com/gpu.shared": 78},
        },
        id="time-sliced-rename-by-default-advertises-gpu-shared",
    ),
    pytest.param(
        {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "2"},
        {"nvidia.com/gpu.shared": "8"},
        None,
        {"gpu_count": 2, "sharing": Sharing.TIME_SLICED, "replicas": 4},
        id="time-sliced-replicas-inferred-when-label-missing",
    ),
    pytest.param(
        {
            "nvidia.com/gpu.product": "NVIDIA-L40S",
            "nvidia.com/gpu.sharing-strategy": "mps",
            "nvidia.com/gpu.replicas": "2",
        },
        {"nvidia.com/gpu": "4"},
        None,
        {"types": ("nvidia-l40s-48gb",), "gpu_count": 2, "sharing": Sharing.MPS, "replicas": 2},
        id="mps",
    ),
    # --- NVIDIA MIG --------------------------------------------------------------------------------
    pytest.param(
        {
            "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb",
            "nvidia.com/gpu.count": "56",
            "nvidia.com/gpu.memory": "5120",
            "nvidia.com/mig.strategy": "single",
        },
        {"nvidia.com/gpu": "56"},
        None,
        {
            "types": ("nvidia-a100-40gb",),
            "gpu_count": 8,
            "memory_gb": 40,
            "sharing": Sharing.MIG,
            "mig": MigLayout(strategy="single", slices={"1g.5gb": 56}),
        },
        id="mig-single-56-slices-on-8-gpus",
    ),
    pytest.param(
        {
            "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb-SHARED",
            "nvidia.com/gpu.count": "7",
            "nvidia.com/gpu.replicas": "2",
        },
        {"nvidia.com/gpu": "14"},
        None,
        {
            "gpu_count": 1,
            "sharing": Sharing.MIG,
            "replicas": 2,
            "mig": MigLayout(strategy="single", slices={"1g.5gb": 14}),
        },
        id="mig-single-time-sliced",
    ),
    pytest.param(
        {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/mig.strategy": "mixed",
            "nvidia.com/mig-1g.10gb.count": "14",
            "nvidia.com/mig-1g.10gb.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb",
            "nvidia.com/mig-3g.40gb.count": "2",
            "nvidia.com/mig-3g.40gb.product": "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb",
        },
        {"nvidia.com/gpu": "5", "nvidia.com/mig-1g.10gb": "14", "nvidia.com/mig-3g.40gb": "2"},
        {"nvidia.com/gpu": "5", "nvidia.com/mig-1g.10gb": "12", "nvidia.com/mig-3g.40gb": "2"},
        {
            "types": ("nvidia-h100-80gb",),
            "gpu_count": 5 + 2 + 1,  # 5 whole, 14 x 1g.10gb on 2 GPUs, 2 x 3g.40gb on 1
            "sharing": Sharing.MIG,
            "mig": MigLayout(strategy="mixed", slices={"1g.10gb": 12, "3g.40gb": 2}),
            "resources": {"nvidia.com/gpu": 5, "nvidia.com/mig-1g.10gb": 12, "nvidia.com/mig-3g.40gb": 2},
        },
        id="mig-mixed-two-profiles-plus-whole-gpus-is-one-type",
    ),
    pytest.param(
        {
            "nvidia.com/mig-2g.20gb.count": "3",
            "nvidia.com/mig-2g.20gb.product": "NVIDIA-A100-SXM4-80GB-MIG-2g.20gb",
        },
        {},
        None,
        {
            "types": ("nvidia-a100-80gb",),
            "gpu_count": 1,
            "mig": MigLayout(strategy="mixed", slices={"2g.20gb": 3}),
        },
        id="mig-mixed-from-labels-only-before-device-plugin-reports",
    ),
    pytest.param(
        {
            "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
            "nvidia.com/mig-1g.5gb.count": "7",
            "nvidia.com/mig-1g.5gb.product": "A100-SXM4-40GB-MIG-1g.5gb",
        },
        {"nvidia.com/gpu": "1", "nvidia.com/mig-1g.5gb": "7"},
        None,
        {"type_set": {"nvidia-a100-80gb", "nvidia-a100-40gb"}},
        id="two-nvidia-types-on-one-node",
    ),
    # --- AMD -----------------------------------------------------------------------------------------
    pytest.param(
        {
            "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
            "amd.com/gpu.device-id": "74a1",
            "amd.com/gpu.family": "AI",
            "amd.com/gpu.vram": "192G",
            "amd.com/gpu.cu-count": "304",
        },
        {"amd.com/gpu": "8"},
        None,
        {
            "types": ("amd-mi300x-192gb",),
            "vendor": "amd",
            "gpu_count": 8,
            "memory_gb": 192,
            "product_label": "AMD_Instinct_MI300X_OAM",
            "form_factor": "oam",
            "resources": {"amd.com/gpu": 8},
        },
        id="amd-mi300x-current-labels",
    ),
    pytest.param(
        {"beta.amd.com/gpu.product-name.AMD_Instinct_MI250X": "1", "beta.amd.com/gpu.vram.64G": "1"},
        {"amd.com/gpu": "8"},
        None,
        {"types": ("amd-mi250x-128gb",), "gpu_count": 8},
        id="amd-legacy-value-in-key-labels",
    ),
    pytest.param(
        {"amd.com/gpu.device-id": "74a1"},
        {"amd.com/gpu": "1"},
        None,
        {"types": ("amd-mi300x-192gb",)},
        id="amd-device-id-only",
    ),
    # --- Intel -------------------------------------------------------------------------------------
    pytest.param(
        {
            "gpu.intel.com/family": "Max_Series",
            "gpu.intel.com/product": "Max_1550",
            "gpu.intel.com/device.count": "4",
        },
        {"gpu.intel.com/i915": "4", "gpu.intel.com/i915_monitoring": "1"},
        None,
        {
            "types": ("intel-max-1550-128gb",),
            "vendor": "intel",
            "gpu_count": 4,
            "memory_gb": 128,
            "resources": {"gpu.intel.com/i915": 4},
        },
        id="intel-max-monitoring-resources-are-not-accelerators",
    ),
    pytest.param(
        {"gpu.intel.com/product": "Max_1100", "gpu.intel.com/device.count": "2"},
        {"gpu.intel.com/i915": "8"},
        None,
        {"gpu_count": 2, "sharing": Sharing.TIME_SLICED, "replicas": 4},
        id="intel-shared-devices-are-time-sliced",
    ),
    # --- Intel Gaudi: the generation only from evidence ------------------------------------------------
    *(
        pytest.param(
            {"habana.ai/device.count": "8", **({"node.kubernetes.io/instance-type": it} if it else {})},
            {"habana.ai/gaudi": "8"},
            None,
            {"types": (expected,), "gpu_count": 8, "vendor": "intel"},
            id=name,
        )
        for it, expected, name in [
            ("dl1.24xlarge", "intel-gaudi-32gb", "gaudi-aws-dl1-is-gaudi1"),
            ("gx3d-160x1792x8gaudi3", "intel-gaudi3-128gb", "gaudi-instance-name-says-gaudi3"),
            ("gaudi2-8x-node", "intel-gaudi2-96gb", "gaudi-instance-name-says-gaudi2"),
            ("dl2q.24xlarge", "unknown", "gaudi-dl2q-is-qualcomm-not-gaudi2"),
            ("", "unknown", "gaudi-no-evidence-unknown"),
        ]
    ),
    # --- unknown and garbage ---------------------------------------------------------------------------
    pytest.param(
        {},
        {"nvidia.com/gpu": "4"},
        None,
        {"types": ("unknown",), "vendor": "nvidia", "gpu_count": 4, "memory_gb": None},
        id="gpus-in-capacity-but-no-labels-is-unknown",
    ),
    pytest.param(
        {"nvidia.com/gpu.product": "NVIDIA-TITAN-RTX", "nvidia.com/gpu.memory": "24576"},
        {"nvidia.com/gpu": "2"},
        None,
        {"types": ("unknown",), "memory_gb": 24.0, "product_label": "NVIDIA-TITAN-RTX"},
        id="unknown-product-keeps-nvml-memory",
    ),
    *(
        pytest.param(
            labels,
            {"nvidia.com/gpu": gpu} if gpu else {},
            None,
            {"types": types, "gpu_count": count},
            id=name,
        )
        for labels, gpu, types, count, name in [
            ({}, "abc", (), 0, "garbage-capacity-is-zero"),
            ({}, "-4", (), 0, "negative-capacity-is-zero"),
            ({}, "1.5", (), 0, "fractional-capacity-is-zero"),
            ({}, "1e999999", (), 0, "absurd-exponent-is-zero"),
            ({"nvidia.com/gpu.product": "NVIDIA-L4"}, "abc", ("nvidia-l4-24gb",), 0, "label-without-devices"),
            (
                {"nvidia.com/gpu.count": "lots", "nvidia.com/gpu.product": "NVIDIA-L4"},
                "2",
                ("nvidia-l4-24gb",),
                2,
                "bad-count-label",
            ),
            (
                {"nvidia.com/gpu.replicas": "-3", "nvidia.com/gpu.product": "NVIDIA-L4"},
                "2",
                ("nvidia-l4-24gb",),
                2,
                "bad-replicas",
            ),
            ({"nvidia.com/gpu.present": "true"}, "", ("unknown",), 0, "present-label-only"),
            ({"nvidia.com/gpu.product": "-SHARED"}, "1", ("unknown",), 1, "suffix-only-product"),
        ]
    ),
    # --- cloud provider labels -------------------------------------------------------------------------
    *(
        pytest.param(labels, GPU, None, {"types": (expected,)}, id=name)
        for labels, expected, name in [
            ({"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, "nvidia-a100-40gb", "gke-tesla-a100"),
            (
                {"cloud.google.com/gke-accelerator": "nvidia-h100-mega-80gb"},
                "nvidia-h100-80gb",
                "gke-h100-mega",
            ),
            ({"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}, "nvidia-h200-141gb", "gke-canonical"),
            ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, "nvidia-l4-24gb", "gke-l4"),
            ({"cloud.google.com/gke-accelerator": "nvidia-tesla-k80"}, "unknown", "gke-unknown-alias"),
            ({"k8s.amazonaws.com/accelerator": "NVIDIA-A10G"}, "nvidia-a10g-24gb", "eks-accelerator"),
            (
                {"nvidia.com/gpu.product": "NVIDIA-L40S", "cloud.google.com/gke-accelerator": "nvidia-l4"},
                "nvidia-l40s-48gb",
                "operator-label-beats-cloud-alias",
            ),
        ]
    ),
    pytest.param(
        {
            "cloud.google.com/gke-accelerator": "nvidia-l4",
            "cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
            "cloud.google.com/gke-max-shared-clients-per-gpu": "3",
        },
        {"nvidia.com/gpu": "6"},
        None,
        {"types": ("nvidia-l4-24gb",), "gpu_count": 2, "sharing": Sharing.TIME_SLICED, "replicas": 3},
        id="gke-time-sharing-labels",
    ),
    pytest.param(
        {
            "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
            "cloud.google.com/gke-gpu-partition-size": "1g.5gb",
        },
        {"nvidia.com/gpu": "14"},
        None,
        {
            "types": ("nvidia-a100-40gb",),
            "gpu_count": 2,
            "sharing": Sharing.MIG,
            "mig": MigLayout(strategy="single", slices={"1g.5gb": 14}),
        },
        id="gke-mig-partition-is-single-strategy",
    ),
    # --- RDMA -----------------------------------------------------------------------------------------------
    *(
        pytest.param(labels, {**GPU, **resources}, None, {"rdma": rdma}, id=name)
        for labels, resources, rdma, name in [
            ({"feature.node.kubernetes.io/rdma.available": "true"}, {}, True, "rdma-nfd-label"),
            ({"feature.node.kubernetes.io/custom-rdma.available": "false"}, {}, False, "rdma-label-false"),
            ({}, {"rdma/rdma_shared_device_a": "63"}, True, "rdma-shared-device"),
            ({}, {"vpc.amazonaws.com/efa": "32"}, True, "rdma-aws-efa"),
            ({}, {"nvidia.com/rdma_shared_device": "1"}, True, "rdma-nvidia"),
            ({}, {"rdma/hca": "0"}, False, "rdma-zero-resource"),
            ({}, {}, False, "rdma-none"),
        ]
    ),
]


@pytest.mark.parametrize(("labels", "capacity", "allocatable", "expected"), NODES)
def test_node_facts(labels, capacity, allocatable, expected):
    """One node's labels and resources -> the facts normalise_node derives (only those named)."""
    node = make_node(labels, capacity, allocatable)
    got = {key: FACTS[key](node) if key in FACTS else getattr(node, key) for key in expected}
    assert got == expected


def test_cloud_topology_aliases_and_custom_keys():
    labels = {
        "topology.kubernetes.io/zone": "us-central1-a",
        "cloud.google.com/gce-topology-block": "b1",
        "cloud.google.com/gce-topology-subblock": "sb3",
        "site/rack": "r12",
        "kubernetes.io/hostname": "n1",
    }
    default = normalise_node(labels, {}, {}, CATALOG)
    assert default.topology.path("leaf") == (None, "us-central1-a", None, "b1", "sb3")
    custom = normalise_node(
        labels, {}, {}, CATALOG, topology_keys=(("leaf", ("site/rack",)), ("rack", ("x",)))
    )
    assert (custom.topology.zone, custom.topology.leaf, custom.topology.hostname) == (None, "r12", "n1")
    assert default.types == () and default.gpu_count == 0


def test_default_topology_keys_cover_every_level():
    assert [level for level, _ in DEFAULT_TOPOLOGY_KEYS] == ["region", "zone", "core", "spine", "leaf"]


# ---------------------------------------------------------------------------------- robustness

_label_keys = st.one_of(
    st.sampled_from(
        [
            "nvidia.com/gpu.product",
            "nvidia.com/gpu.count",
            "nvidia.com/gpu.memory",
            "nvidia.com/gpu.replicas",
            "nvidia.com/gpu.sharing-strategy",
            "nvidia.com/mig.strategy",
            "nvidia.com/mig-1g.10gb.count",
            "nvidia.com/mig-1g.10gb.product",
            "nvidia.com/mig-3g.40gb.replicas",
            "nvidia.com/gpu.present",
            "cloud.google.com/gke-accelerator",
            "amd.com/gpu.product-name",
            "amd.com/gpu.vram",
            "beta.amd.com/gpu.vram.192G",
            "amd.com/gpu.device-id",
            "gpu.intel.com/product",
            "gpu.intel.com/device.count",
            "gpu.intel.com/memory.max",
            "habana.ai/device.count",
            "node.kubernetes.io/instance-type",
            "feature.node.kubernetes.io/rdma.available",
        ]
    ),
    st.text(max_size=40),
)
_label_values = st.one_of(
    st.sampled_from(["NVIDIA-A100-SXM4-80GB-MIG-1g.10gb-SHARED", "8", "0", "-1", "192G", "true", "mps", ""]),
    st.text(max_size=60),
)
_resource_keys = st.one_of(
    st.sampled_from(
        [
            "nvidia.com/gpu",
            "nvidia.com/gpu.shared",
            "nvidia.com/mig-1g.10gb",
            "nvidia.com/mig-3g.40gb.shared",
            "amd.com/gpu",
            "gpu.intel.com/i915",
            "habana.ai/gaudi",
            "rdma/hca",
        ]
    ),
    st.text(max_size=30),
)
_quantities = st.one_of(
    st.sampled_from(["8", "0", "-2", "1.5", "abc", "1e9", "1e99999", "500m", "64Gi", ""]),
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.dictionaries(_label_keys, _label_values, max_size=12),
    capacity=st.dictionaries(_resource_keys, _quantities, max_size=6),
    allocatable=st.dictionaries(_resource_keys, _quantities, max_size=6),
)
def test_normalise_node_never_raises(labels, capacity, allocatable):
    node = normalise_node(labels, capacity, allocatable, CATALOG)
    assert node.gpu_count >= 0 and node.replicas >= 1
    assert all(count >= 0 for count in node.resources.values())
    assert all(t == "unknown" or t in CATALOG for t in node.types)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalise_product_never_raises(value):
    assert normalise_product(value, CATALOG).accelerator_type in CATALOG


def test_non_mapping_inputs_are_treated_as_empty():
    node = normalise_node(None, None, ["nvidia.com/gpu"], CATALOG, topology_keys=[("zone", 5), "leaf"])  # type: ignore[arg-type]
    assert (node.types, node.gpu_count, node.resources) == ((), 0, {})
