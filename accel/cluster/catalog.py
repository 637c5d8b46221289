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
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    # Values of `cloud.google.com/gke-accelerator` that mean this type (GKE spells some types its own
    # way, e.g. `nvidia-tesla-a100`); used when a node has no GPU-operator product label.
    gke_accelerators: tuple[str, ...] = Field(default=(), alias="gkeAccelerators")
    # fnmatch patterns on `node.kubernetes.io/instance-type` for devices whose labels do not name
    # the model (Gaudi generations): the only evidence used for them.
    instance_types: tuple[str, ...] = Field(default=(), alias="instanceTypes")

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
    name=UNKNOWN_TYPE, display_name=UNKNOWN_DISPLAY, vendor="unknown", model="unknown", memory_gb=0
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


BUILTIN_CATALOG_RESOURCE = "data/catalog.yaml"


class CatalogFileError(ValueError):
    """A catalog YAML document that does not describe valid accelerator types."""


def parse_catalog(text: str, *, source: str = "catalog.yaml") -> Catalog:
    """Parse a catalog document (`types:` list of AcceleratorType mappings, camelCase keys).

    Raises CatalogFileError naming the source, the entry index and name, and the field at fault,
    so a broken edit of the data file points straight at the line to fix.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"{source}: not valid YAML: {exc}") from exc
    entries = document.get("types") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise CatalogFileError(f"{source}: expected a top-level 'types:' list of accelerator types")
    types: list[AcceleratorType] = []
    for index, entry in enumerate(entries):
        name = entry.get("name", "?") if isinstance(entry, Mapping) else "?"
        try:
            types.append(AcceleratorType.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<entry>'}: {err['msg']}" for err in exc.errors()
            )
            raise CatalogFileError(f"{source}: types[{index}] ({name}): {problems}") from exc
    try:
        return Catalog(types)
    except ValueError as exc:
        raise CatalogFileError(f"{source}: {exc}") from exc


@lru_cache(maxsize=1)
def load_builtin_catalog() -> Catalog:
    """The catalog shipped in `accel/data/catalog.yaml`, parsed once per process (it is immutable)."""
    text = resources.files("accel").joinpath(BUILTIN_CATALOG_RESOURCE).read_text(encoding="utf-8")
    return parse_catalog(text, source=f"accel/{BUILTIN_CATALOG_RESOURCE}")
