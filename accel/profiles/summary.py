"""The public shape of hardware-profile availability: `ProfileSummary` and its parts.

Frozen pydantic models with the camelCase aliases `GET /api/hardware-profiles` serves; built by
`accel.profiles.availability.summarise_profile`, rendered by `cli.tables`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GpuLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    default: int
    max: int | None


class TypeAvailability(BaseModel):
    """Availability of one accelerator type within a profile."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    type: str
    display_name: str = Field(alias="displayName")
    total_gpus: float = Field(alias="totalGpus")
    available_gpus: float = Field(alias="availableGpus")
    available_units: int = Field(alias="availableUnits")
    nodes: int


class ProfileSummary(BaseModel):
    """The public description of one hardware profile (the `GET /api/hardware-profiles` item)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    name: str
    display_name: str = Field(alias="displayName")
    description: str
    accelerator_type: str | None = Field(alias="acceleratorType")  # first preference; None = generic
    accelerator_types: tuple[str, ...] = Field(alias="acceleratorTypes")
    display_type: str = Field(alias="displayType")  # "NVIDIA H200 141GB"
    memory: str | None  # "141GB" per device (MIG: the slice's memory)
    architecture: str | None
    sharing: str
    mig_profile: str | None = Field(alias="migProfile")
    replicas: int | None
    unit: str  # "GPU", "replica", "1g.10gb slice"
    gpus: GpuLimits
    enabled: bool
    available: bool
    available_gpus: float = Field(alias="availableGpus")
    available_units: int = Field(alias="availableUnits")
    largest_free_block: int = Field(alias="largestFreeBlock")  # most free units on one node
    total_gpus: float = Field(alias="totalGpus")
    pending_pods: int = Field(alias="pendingPods")
    price_per_gpu_hour: float | None = Field(alias="pricePerGpuHour")
    price_per_unit_hour: float | None = Field(alias="pricePerUnitHour")
    cost_per_hour_default: float | None = Field(alias="costPerHourDefault")
    price_source: str | None = Field(alias="priceSource")
    by_type: tuple[TypeAvailability, ...] = Field(alias="byType")
