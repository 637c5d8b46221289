"""The node view (seed AC-001): one row per node with its accelerators, allocation and status.

Pure: built from an `Inventory`; shared by `accel nodes`, the API's `GET /api/nodes` and the web page.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from accel.capacity.free import node_free_units
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import Catalog

SORT_KEYS = ("name", "type", "gpus", "free", "allocated", "memory", "zone", "status")
MIXED = "mixed"


class NodeRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: str  # canonical type, "mixed", or "unknown"
    types: tuple[str, ...]
    display_name: str
    vendor: str | None
    gpus: int
    allocated: float  # GPU-equivalents in use
    free: float
    memory_gb: float | None
    sharing: str  # "exclusive", "time-sliced x4", "mig mixed 1g.10gb:14,3g.40gb:4"
    resources: dict[str, int]
    resources_free: dict[str, int]
    zone: str | None
    spine: str | None
    leaf: str | None
    rdma: bool
    status: str
    labels: dict[str, str]
    warnings: tuple[str, ...] = ()  # e.g. a GPU count in status that is not a number (read as 0)


def _sharing_text(node: NodeInventory) -> str:
    accel = node.accelerators
    if accel.mig:
        slices = ",".join(f"{p}:{n}" for p, n in sorted(accel.mig.slices.items()))
        return f"mig {accel.mig.strategy} {slices}".strip()
    if accel.sharing.value in ("time-sliced", "mps"):
        return f"{accel.sharing.value} x{accel.replicas}"
    return accel.sharing.value


def node_row(node: NodeInventory, catalog: Catalog) -> NodeRow:
    accel = node.accelerators
    types = accel.types
    kind = MIXED if len(types) > 1 else (types[0] if types else "")
    display = (
        "Mixed: " + " + ".join(catalog.display_name(t) for t in types)
        if len(types) > 1
        else catalog.display_name(kind)
        if kind
        else ""
    )
    allocated = node.gpus_allocated(catalog)
    topo = accel.topology
    return NodeRow(
        name=node.name,
        type=kind,
        types=types,
        display_name=display,
        vendor=accel.vendor,
        gpus=accel.gpu_count,
        allocated=float(allocated),
        free=float(max(Fraction(0), accel.gpu_count - allocated)),
        memory_gb=accel.memory_gb,
        sharing=_sharing_text(node) if types else "",
        resources=dict(accel.resources),
        resources_free=node_free_units(node),
        zone=topo.zone,
        spine=topo.spine,
        leaf=topo.leaf,
        rdma=topo.rdma,
        status=node.status,
        labels=dict(node.labels),
        warnings=accel.warnings,
    )


FILTER_ONLY_TYPES = ("mixed", "unknown")  # node-view types that are not catalog entries


def unknown_type_filter(type_filter: Sequence[str], catalog: Catalog) -> str | None:
    """Why `type_filter` names a type no node can have, with the closest known names; None if fine.

    Suggestions instead of the whole catalog: a typo should be answered with the one name meant,
    not 46 to read through.
    """
    known = list(dict.fromkeys([*catalog.names(), *FILTER_ONLY_TYPES]))
    unknown = [t for t in type_filter if t not in catalog and t not in FILTER_ONLY_TYPES]
    if not unknown:
        return None
    parts = []
    for name in unknown:
        close = closest_type_names(name, known)
        parts.append(f"{name!r} (did you mean {' or '.join(close)}?)" if close else repr(name))
    return (f"unknown accelerator type {', '.join(parts)}; types are canonical names like nvidia-h100-80gb "
            "(`accel nodes -o json` shows each node's), or 'mixed' / 'unknown'")


def closest_type_names(name: str, known: Sequence[str], limit: int = 3) -> list[str]:
    """The known type names closest to `name`, also matching without the memory suffix
    (`nvidia-a100` and `nvidia-a101` mean `nvidia-a100-80gb` / `-40gb`, not `nvidia-a10-24gb`)."""

    def score(candidate: str) -> float:
        stem = re.sub(r"-\d+gb$", "", candidate)
        if len(name) >= 3 and name in candidate:
            return 1.0  # `h100` -> every nvidia-h100-*, ahead of near misses like nvidia-a100-*
        return max(
            difflib.SequenceMatcher(None, name, candidate).ratio(),
            difflib.SequenceMatcher(None, name, stem).ratio(),
        )

    ranked = sorted(known, key=lambda candidate: (-score(candidate), candidate))
    return [c for c in ranked[:limit] if score(c) >= 0.6]


def node_rows(
    inventory: Inventory,
    catalog: Catalog,
    *,
    type_filter: Sequence[str] = (),
    sort: str = "name",
    descending: bool = False,
    accelerators_only: bool = True,
) -> list[NodeRow]:
    """Rows for the node view, filtered by canonical type (or "mixed"/"unknown") and sorted."""
    if sort not in SORT_KEYS:
        raise ValueError(f"cannot sort by {sort!r}; choose one of: {', '.join(SORT_KEYS)}")
    # A node whose GPU counts could not be read stays in view: its warning says why it shows 0.
    rows = [
        node_row(n, catalog)
        for n in inventory.nodes
        if n.accelerators.types or n.accelerators.warnings or not accelerators_only
    ]
    if type_filter:
        wanted = set(type_filter)
        rows = [r for r in rows if r.type in wanted or wanted & set(r.types)]
    return sorted(rows, key=_sort_key(sort), reverse=descending)


def _sort_key(sort: str) -> Any:
    keys: dict[str, Any] = {
        "name": lambda r: r.name,
        "type": lambda r: (r.type, r.name),
        "gpus": lambda r: (r.gpus, r.name),
        "free": lambda r: (r.free, r.name),
        "allocated": lambda r: (r.allocated, r.name),
        "memory": lambda r: (r.memory_gb or 0, r.name),
        "zone": lambda r: (r.zone or "", r.spine or "", r.leaf or "", r.name),
        "status": lambda r: (r.status, r.name),
    }
    return keys[sort]


Format = Literal["table", "json", "yaml"]
