"""Label normalisation: from a Node's labels and capacity to what accelerators it really has.

Reads what the operators already publish (NVIDIA GFD / GPU operator, AMD node labeller, Intel
NFD rules, Habana feature discovery, cloud labels; accelerators.md sections 1-4) and answers with
canonical catalog types, physical device counts, sharing mode, MIG layout, schedulable resources
and topology. Product strings themselves are parsed in `accel.cluster.products`.

Invariants:
1. Never raises on any labels or quantity strings: a malformed value counts as absent, a bad
   quantity as 0 (`nvidia.com/gpu: "abc"` is 0 GPUs), an unrecognised product as `unknown`.
2. A node with accelerators in capacity (or a vendor presence label) but no recognisable product
   has `types == ("unknown",)`; a node with none has `types == ()`.
3. `gpu_count` counts physical devices: time-slicing replicas are divided out, MIG instances are
   folded back into the GPUs that host them (`mig_gpu_count`).
4. `resources` lists every accelerator resource with its allocatable count (capacity when the
   node reports no allocatable for it), including zeros, so callers can tell "advertised, 0 free"
   from "not advertised".
5. `types` lists each distinct canonical type once; the primary (first) one belongs to the vendor
   with the most devices. A MIG-mixed node whose slices and whole GPUs share a parent is one type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.cluster.products import match_product, parse_product, product_form_factor
from accel.cluster.quantity import QuantityError, parse_quantity
from accel.cluster.vendor_facts import NodeFacts, VendorPart, safe_count
from accel.cluster.vendors import detect_vendors

DEFAULT_TOPOLOGY_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("region", ("topology.kubernetes.io/region",)),
    ("zone", ("topology.kubernetes.io/zone",)),
    (
        "core",
        (
            "network.topology.nvidia.com/core",
            "network.topology.nvidia.com/datacenter",  # older Topograph label set
            "topology.k8s.aws/network-node-layer-1",
        ),
    ),
    (
        "spine",
        (
            "network.topology.nvidia.com/spine",
            "network.topology.nvidia.com/block",
            "cloud.google.com/gce-topology-block",
            "topology.k8s.aws/network-node-layer-2",
            "oci.oraclecloud.com/host.network_block_id",
        ),
    ),
    (
        "leaf",
        (
            "network.topology.nvidia.com/leaf",
            "cloud.google.com/gce-topology-subblock",
            "topology.k8s.aws/network-node-layer-3",
            "oci.oraclecloud.com/host.rack_id",
        ),
    ),
)
# Levels read even when a custom key list leaves them out (a custom list may still override them).
EXTRA_TOPOLOGY_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hostname", ("kubernetes.io/hostname",)),
    (
        "clique",
        (
            "nvidia.com/gpu.clique",
            "network.topology.nvidia.com/accelerator",
            "topology.k8s.aws/ultraserver-id",
        ),
    ),
)
RDMA_LABELS: tuple[str, ...] = (
    "feature.node.kubernetes.io/custom-rdma.available",
    "feature.node.kubernetes.io/rdma.available",
)


class Sharing(StrEnum):
    EXCLUSIVE = "exclusive"
    TIME_SLICED = "time-sliced"
    MPS = "mps"
    MIG = "mig"


class ProductMatch(BaseModel):
    """What one product label value says."""

    model_config = ConfigDict(frozen=True)

    accelerator_type: str  # canonical name or "unknown"
    form_factor: str | None = None  # "sxm" | "pcie" | "nvl" | "oam" | "superchip" | None
    mig_profile: str | None = None  # e.g. "1g.10gb" when the value carries a -MIG- suffix
    shared: bool = False  # value ended with -SHARED


class MigLayout(BaseModel):
    model_config = ConfigDict(frozen=True)

    strategy: str  # "single" | "mixed"
    slices: Mapping[str, int] = Field(default_factory=dict)  # profile -> allocatable count on the node


class Topology(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str | None = None
    zone: str | None = None
    core: str | None = None
    spine: str | None = None
    leaf: str | None = None
    hostname: str | None = None
    clique: str | None = None  # NVLink domain (nvidia.com/gpu.clique or .../accelerator)
    rdma: bool = False  # RDMA/RoCE/EFA capable (labels or rdma/*, */efa resources)

    def path(self, level: str) -> tuple[str | None, ...]:
        """Full path down to `level` (values are only unique within their parent)."""
        levels = ("region", "zone", "core", "spine", "leaf")
        return tuple(getattr(self, name) for name in levels[: levels.index(level) + 1])


class NodeAccelerators(BaseModel):
    model_config = ConfigDict(frozen=True)

    types: tuple[str, ...]  # canonical types on the node; () = no accelerators; ("unknown",) possible
    vendor: str | None = None
    gpu_count: int = 0  # physical devices
    memory_gb: float | None = None  # per physical device
    form_factor: str | None = None
    product_label: str | None = None  # the raw label value the type came from
    sharing: Sharing = Sharing.EXCLUSIVE
    replicas: int = 1  # time-slicing / MPS replicas per device
    mig: MigLayout | None = None
    resources: Mapping[str, int] = Field(default_factory=dict)  # accelerator resource name -> allocatable
    topology: Topology = Field(default_factory=Topology)
    # Accelerator counts in the Node's status that are not whole non-negative numbers (read as 0):
    # said out loud so a broken device plugin is not mistaken for a node without GPUs.
    warnings: tuple[str, ...] = ()

    @property
    def primary_type(self) -> str | None:
        return self.types[0] if self.types else None


ACCELERATOR_RESOURCE_PREFIXES: tuple[str, ...] = (
    "nvidia.com/gpu",
    "nvidia.com/mig-",
    "amd.com/gpu",
    "habana.ai/gaudi",
    "gpu.intel.com/i915",
    "gpu.intel.com/xe",
)


def is_accelerator_resource(resource_name: str) -> bool:
    """True for every extended resource name that represents (a share of) an accelerator."""
    return resource_name.startswith(ACCELERATOR_RESOURCE_PREFIXES) and not resource_name.endswith(
        "_monitoring"
    )


def normalise_product(
    value: str,
    catalog: Catalog,
    *,
    vendor: str | None = None,
    memory_hint_gb: float | None = None,
) -> ProductMatch:
    """Canonical type, form factor, MIG profile and shared flag named by one product label value.

    `vendor` limits matching to that vendor's types; `memory_hint_gb` (e.g. from
    `nvidia.com/gpu.memory`) breaks ties between same-model types when the value names no memory.
    Unrecognised values give `accelerator_type == "unknown"`; nothing raises.
    """
    parsed = parse_product(value if isinstance(value, str) else "")
    found = match_product(parsed, catalog, vendor=vendor, memory_hint_gb=memory_hint_gb)
    return ProductMatch(
        accelerator_type=found.name if found else UNKNOWN_TYPE,
        form_factor=product_form_factor(parsed, found),
        mig_profile=parsed.mig_profile,
        shared=parsed.shared,
    )


def normalise_node(
    labels: Mapping[str, str],
    capacity: Mapping[str, object],
    allocatable: Mapping[str, object],
    catalog: Catalog,
    *,
    topology_keys: Sequence[tuple[str, tuple[str, ...]]] = DEFAULT_TOPOLOGY_KEYS,
) -> NodeAccelerators:
    """Everything scheduling needs to know about one node's accelerators (module invariants 1-5).

    `capacity`/`allocatable` are the Node's status maps (quantity strings); `topology_keys` is the
    ordered (level, label keys) list, first present key per level wins.
    """
    clean = _clean_labels(labels)
    capacity_counts, allocatable_counts = _counts(capacity), _counts(allocatable)
    merged = {**capacity_counts, **allocatable_counts}
    facts = NodeFacts(
        labels=clean,
        capacity=capacity_counts or allocatable_counts,
        allocatable={name: merged[name] for name in sorted(merged) if is_accelerator_resource(name)},
        catalog=catalog,
    )
    parts = sorted(detect_vendors(facts), key=lambda part: -part.gpu_count)
    topology = read_topology(clean, merged, topology_keys=topology_keys)
    warnings = count_warnings(capacity, capacity_counts, "capacity")
    if allocatable is not capacity:
        warnings += count_warnings(allocatable, allocatable_counts, "allocatable")
    if not parts:
        return NodeAccelerators(types=(), resources=facts.allocatable, topology=topology, warnings=warnings)
    return _combine(parts, facts.allocatable, topology, warnings)


def count_warnings(resources: Mapping[str, object], counts: Mapping[str, int], field: str) -> tuple[str, ...]:
    """One message per accelerator count in `resources` that `_counts` had to read as 0 though it is not 0."""
    return tuple(
        f"status.{field}[{name}] is {resources[name]!r}, not a whole non-negative number of devices; read "
        "as 0"
        for name, count in counts.items()
        if count == 0 and is_accelerator_resource(name) and not _is_zero(resources[name])
    )


def _is_zero(value: object) -> bool:
    try:
        return parse_quantity(value) == 0
    except (QuantityError, ArithmeticError):
        return False


def _combine(
    parts: list[VendorPart], resources: Mapping[str, int], topology: Topology, warnings: tuple[str, ...]
) -> NodeAccelerators:
    """One NodeAccelerators from vendor parts; the part with the most devices is the primary."""
    primary = parts[0]
    types = tuple(dict.fromkeys(t for part in parts for t in part.types))
    if len(types) > 1 and UNKNOWN_TYPE in types:
        types = tuple(t for t in types if t != UNKNOWN_TYPE)
    mig = (
        MigLayout(strategy=primary.mig_strategy, slices=primary.mig_slices) if primary.mig_strategy else None
    )
    return NodeAccelerators(
        types=types,
        vendor=primary.vendor,
        gpu_count=sum(part.gpu_count for part in parts),
        memory_gb=primary.memory_gb,
        form_factor=primary.form_factor,
        product_label=primary.product_label,
        sharing=Sharing(primary.sharing),
        replicas=primary.replicas,
        mig=mig,
        resources=resources,
        topology=topology,
        warnings=warnings,
    )


def _clean_labels(labels: Mapping[str, str]) -> dict[str, str]:
    items: Iterable[tuple[object, object]] = labels.items() if isinstance(labels, Mapping) else ()
    return {k: v for k, v in items if isinstance(k, str) and isinstance(v, str)}


def _counts(resources: Mapping[str, object]) -> dict[str, int]:
    """Counts of the resources this module reads (accelerators, fabric NICs); others are skipped."""
    items: Iterable[tuple[object, object]] = resources.items() if isinstance(resources, Mapping) else ()
    return {
        k: safe_count(v)
        for k, v in items
        if isinstance(k, str) and (is_accelerator_resource(k) or _is_fabric_resource(k))
    }


def read_topology(
    labels: Mapping[str, str],
    resources: Mapping[str, int],
    *,
    topology_keys: Sequence[tuple[str, tuple[str, ...]]] = DEFAULT_TOPOLOGY_KEYS,
) -> Topology:
    """Each level from the first of its keys present on the node; unknown level names are ignored.

    Levels missing from `topology_keys` stay None, except hostname and clique, which default to
    EXTRA_TOPOLOGY_KEYS. `resources` (name -> count) feeds the RDMA check.
    """
    levels = set(Topology.model_fields) - {"rdma"}
    chosen: dict[str, tuple[str, ...]] = dict(EXTRA_TOPOLOGY_KEYS)
    for entry in topology_keys if isinstance(topology_keys, Sequence) else ():
        if isinstance(entry, tuple | list) and len(entry) == 2 and entry[0] in levels:
            keys: object = entry[1]
            if isinstance(keys, str):
                chosen[entry[0]] = (keys,)
            elif isinstance(keys, tuple | list):
                chosen[entry[0]] = tuple(k for k in keys if isinstance(k, str))
    values = {level: next((labels[k] for k in keys if labels.get(k)), None) for level, keys in chosen.items()}
    return Topology(**values, rdma=has_rdma(labels, resources))


def has_rdma(labels: Mapping[str, str], resources: Mapping[str, int]) -> bool:
    """RDMA/RoCE/EFA capable: an NFD rdma label is true, or an rdma/*, */efa, nvidia.com/rdma* resource >
    0."""
    if any(labels.get(key, "").strip().lower() == "true" for key in RDMA_LABELS):
        return True
    return any(count > 0 and _is_fabric_resource(name) for name, count in resources.items())


def _is_fabric_resource(name: str) -> bool:
    return name.startswith(("rdma/", "nvidia.com/rdma")) or name.endswith("/efa")
