"""The accelerator catalog: every known accelerator type under its canonical name.

Canonical names are `<vendor>-<model>-<memory>gb`, lowercase (`nvidia-a100-80gb`). PCIe and SXM
parts with the same memory share one canonical type; the form factor is kept per node instead.
The built-in data lives in `accel/data/catalog.yaml`; admins add or override types from the
policy (`accelerators.yaml` in the policy ConfigMap), so a new GPU never needs a release.

Invariants:
1. Names are unique and match CANONICAL_NAME_PATTERN (or are exactly UNKNOWN_TYPE).
2. `Catalog.get(UNKNOWN_TYPE)` always answers: nodes with GPUs but no labels still render.
3. Overrides replace whole fields of an existing type or add a new type; they never delete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNKNOWN_TYPE = "unknown"
UNKNOWN_DISPLAY = "GPU - type unknown"
CANONICAL_NAME_PATTERN = re.compile(r"^[a-z]+(-[a-z0-9]+)+-\d+gb$")

Vendor = Literal["nvidia", "amd", "intel", "unknown"]


class Price(BaseModel):
    """An indicative on-demand list price per GPU-hour, with where and when it was seen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd_per_gpu_hour: float = Field(ge=0)
    source: str = ""
    date: str = ""


class AcceleratorType(BaseModel):
    """One accelerator type with the facts scheduling, pricing and estimates need."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    display_name: str = Field(alias="displayName")
    vendor: Vendor
    model: str
    architecture: str = ""
    memory_gb: float = Field(alias="memoryGB", ge=0)
    memory_bandwidth_tbps: float | None = Field(default=None, alias="memoryBandwidthTBps", ge=0)
    bf16_tflops: float | None = Field(default=None, alias="bf16TFLOPS", ge=0)
    fp16_tflops: float | None = Field(default=None, alias="fp16TFLOPS", ge=0)
    form_factors: tuple[str, ...] = Field(default=(), alias="formFactors")
    mig_profiles: tuple[str, ...] = Field(default=(), alias="migProfiles")
    price: Price | None = None
    # Extended resource the device plugin advertises for one whole device.
    resource_name: str = Field(default="nvidia.com/gpu", alias="resourceName")
    # Known node label values (GPU-operator product strings, AMD product names, ...) for this type,
    # used to build node affinity that matches what the operators already publish.
    product_labels: tuple[str, ...] = Field(default=(), alias="productLabels")

    @field_validator("name")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if value != UNKNOWN_TYPE and not CANONICAL_NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a canonical type name: use <vendor>-<model>-<memory>gb, lowercase, "
                "e.g. nvidia-a100-80gb"
            )
        return value

    @property
    def price_per_gpu_hour(self) -> float | None:
        return self.price.usd_per_gpu_hour if self.price else None

    @property
    def dense_tflops(self) -> float | None:
        """Best dense 16-bit tensor throughput (BF16, else FP16)."""
        return self.bf16_tflops or self.fp16_tflops


UNKNOWN_ACCELERATOR = AcceleratorType(
    name=UNKNOWN_TYPE, displayName=UNKNOWN_DISPLAY, vendor="unknown", model="unknown", memoryGB=0
)


class Catalog:
    """An immutable, name-indexed set of accelerator types."""

    __slots__ = ("_types",)

    def __init__(self, types: Iterable[AcceleratorType]) -> None:
        by_name: dict[str, AcceleratorType] = {}
        for accel_type in types:
            if accel_type.name in by_name:
                raise ValueError(f"duplicate accelerator type {accel_type.name!r} in catalog")
            by_name[accel_type.name] = accel_type
        by_name.setdefault(UNKNOWN_TYPE, UNKNOWN_ACCELERATOR)
        self._types: Mapping[str, AcceleratorType] = by_name

    def get(self, name: str) -> AcceleratorType | None:
        return self._types.get(name)

    def __getitem__(self, name: str) -> AcceleratorType:
        return self._types[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[AcceleratorType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> tuple[str, ...]:
        return tuple(self._types)

    def display_name(self, name: str) -> str:
        found = self._types.get(name)
        return found.display_name if found else name

    def with_overrides(self, overrides: Iterable[Mapping[str, Any]]) -> Catalog:
        """A new catalog where each override replaces fields of a type or adds a new type.

        Raises pydantic.ValidationError for an override that does not make a valid type.
        """
        merged = {name: accel_type.model_dump(by_alias=True) for name, accel_type in self._types.items()}
        for override in overrides:
            name = str(override.get("name", ""))
            base = merged.get(name, {})
            merged[name] = {**base, **override}
        return Catalog(AcceleratorType.model_validate(data) for data in merged.values())
