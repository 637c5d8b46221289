"""The inputs and output of per-vendor detection, and the value parsers every reader shares.

`NodeFacts` is one node's cleaned labels and resource counts; `VendorPart` is what one vendor's
devices on it amount to. The parsers read device counts, small integer labels and memory sizes.

Invariants:
1. Parsers never raise: `safe_count`/`label_int` turn garbage into 0/None, so the readers built on
   them (accel.cluster.nvidia, accel.cluster.amd, accel.cluster.intel) never raise either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from accel.cluster.catalog import AcceleratorType, Catalog
from accel.cluster.quantity import QuantityError, parse_quantity

MAX_DEVICE_UNITS = 1_000_000  # larger "counts" are garbage, not hardware


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
    sharing: str = "exclusive"  # accel.cluster.labels.Sharing values
    replicas: int = 1
    mig_strategy: str | None = None  # "single" | "mixed" | None
    mig_slices: Mapping[str, int] = field(default_factory=dict)


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


def label_true(value: str | None) -> bool:
    """Whether a label value says `true` (any case, surrounding blanks ignored)."""
    return isinstance(value, str) and value.strip().lower() == "true"


def type_memory_gb(accel_type: AcceleratorType | None) -> float | None:
    """The catalog type's per-device memory, or None when unknown or not set (0)."""
    return accel_type.memory_gb if accel_type is not None and accel_type.memory_gb > 0 else None
