"""Training-time, memory-fit, serving-speed and cost estimates per hardware profile (pure).

The rules are the numbered RULES below; every answer echoes them (`assumptions.rules`) together
with the numbers from the policy's `settings.estimates`, so a reader can check any figure by hand.
`accel.estimates.estimator.estimate` applies them per profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accel.cluster.catalog import AcceleratorType
from accel.estimates.models_table import known_model_names, lookup_model
from accel.policy.models import EstimateSettings

Precision = Literal["bf16", "fp16", "fp8", "fp32"]
BYTES_PER_PARAM: Mapping[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
FP8_ARCHITECTURES = frozenset({"hopper", "ada", "blackwell", "cdna3", "gaudi2", "gaudi3"})
TF32_ARCHITECTURES = frozenset({"ampere", "hopper", "ada", "blackwell", "cdna2", "cdna3"})
NO_BF16_ARCHITECTURES = frozenset({"pascal", "volta", "turing"})
USABLE_MEMORY_FRACTION = 0.90
RULES: tuple[str, ...] = (
    "1. Training compute = flopsPerParamToken x active parameters x tokens (Kaplan et al. 2020, "
    "https://arxiv.org/abs/2001.08361). Achievable throughput = dense peak TFLOPS for the precision x MFU "
    "x GPUs x scalingEfficiency (the last only when GPUs > 1: one GPU has no communication).",
    "2. Peak by precision: bf16 needs BF16 tensor cores (none before Ampere); fp16 uses the FP16 figure; "
    "fp8 is 2x the 16-bit figure on architectures with FP8 (Hopper, Ada, Blackwell, CDNA3, Gaudi2/3) and "
    "unsupported elsewhere; fp32 runs as TF32 at half the 16-bit figure where TF32 exists, 1/8 elsewhere.",
    "3. Training memory: weights and gradients at the precision's bytes plus optimizerBytesPerParam "
    "(fp32 master copy + Adam moments) per parameter, sharded evenly over all GPUs (ZeRO-3 / FSDP style), "
    "plus activationOverhead of that for activations; it fits when at most usableMemoryFraction of the "
    "device memory is needed.",
    "4. Serving (batch-1 decode is memory bound): tokens/s = GPUs x memory bandwidth x scalingEfficiency "
    "/ (active parameters x bytes per parameter); weights (+ activationOverhead for the KV cache) are "
    "sharded over the GPUs (tensor parallel).",
    "5. Shared profiles compute on a fraction of a device: a time-sliced replica gets 1/replicas of its "
    "compute, bandwidth and memory; a MIG slice g/max_g of compute and bandwidth and its own memory.",
    "6. Multi-type profiles are estimated on their first-preference type; hoursByType shows the others.",
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class EstimateRequest(_Model):
    """What to estimate. Give `model` (a known name) or `params`; `tokens` or `datasetTokens` x `epochs`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True, extra="forbid")

    model: str | None = None
    params: float | None = Field(default=None, gt=0, description="total parameters, e.g. 7e9")
    active_params: float | None = Field(default=None, alias="activeParams", gt=0)
    workload: Literal["training", "inference"] = "training"
    tokens: float | None = Field(default=None, gt=0, description="training tokens in total")
    dataset_tokens: float | None = Field(default=None, alias="datasetTokens", gt=0)
    epochs: float = Field(default=1.0, gt=0)
    precision: Precision = "bf16"
    gpus: int | None = Field(default=None, ge=1, le=1_000_000, description="GPUs (units) per job")
    profiles: tuple[str, ...] | None = None
    rank_by: Literal["time", "cost"] = Field(default="time", alias="rankBy")
    max_hours: float | None = Field(default=None, alias="maxHours", gt=0)
    max_cost_per_hour: float | None = Field(default=None, alias="maxCostPerHour", gt=0)
    min_tokens_per_second: float | None = Field(default=None, alias="minTokensPerSecond", gt=0)


class FieldError(_Model):
    field: str
    message: str


class EstimateInputError(ValueError):
    """The request cannot be estimated; `errors` lists every problem with its field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))


class Assumptions(_Model):
    mfu: float
    flops_per_param_token: float = Field(alias="flopsPerParamToken")
    scaling_efficiency: float = Field(alias="scalingEfficiency")
    optimizer_bytes_per_param: float = Field(alias="optimizerBytesPerParam")
    activation_overhead: float = Field(alias="activationOverhead")
    usable_memory_fraction: float = Field(alias="usableMemoryFraction")
    bytes_per_param: float = Field(alias="bytesPerParam")
    rules: tuple[str, ...]


class ProfileEstimate(_Model):
    profile: str
    display_name: str = Field(alias="displayName")
    accelerator_type: str | None = Field(alias="acceleratorType")
    gpus: int
    unit: str
    supported: bool
    rank: int | None = None
    excluded_because: tuple[str, ...] = Field(default=(), alias="excludedBecause")
    gpus_sized_to_fit: bool = Field(
        default=False, alias="gpusSizedToFit"
    )  # no count asked: the fewest that fit
    max_per_pod: int | None = Field(default=None, alias="maxPerPod")  # the profile's gpus.max
    pods: int = 1  # pods the job needs at `max_per_pod` units each
    notes: tuple[str, ...] = ()  # e.g. a job larger than the profile's per-pod max (never excludes)
    hours: float | None = None
    hours_by_type: dict[str, float] = Field(default_factory=dict, alias="hoursByType")
    peak_tflops_per_unit: float | None = Field(default=None, alias="peakTflopsPerUnit")
    memory_needed_gb_per_unit: float | None = Field(default=None, alias="memoryNeededGbPerUnit")
    memory_gb_per_unit: float | None = Field(default=None, alias="memoryGbPerUnit")
    fits: bool = False
    min_gpus_to_fit: int | None = Field(default=None, alias="minGpusToFit")
    tokens_per_second: float | None = Field(default=None, alias="tokensPerSecond")
    price_per_gpu_hour: float | None = Field(default=None, alias="pricePerGpuHour")
    cost_per_hour: float | None = Field(default=None, alias="costPerHour")
    total_cost: float | None = Field(default=None, alias="totalCost")
    cost_per_million_tokens: float | None = Field(default=None, alias="costPerMillionTokens")


class EstimateResult(_Model):
    model: str | None
    params: float
    active_params: float = Field(alias="activeParams")
    workload: str
    tokens: float | None
    precision: str
    rank_by: str = Field(alias="rankBy")
    best: str | None
    estimates: tuple[ProfileEstimate, ...]
    assumptions: Assumptions


def parse_estimate_request(data: Mapping[str, Any]) -> EstimateRequest:
    """Validate a request body; every problem is reported at once as (field, message with the fix)."""
    try:
        request = EstimateRequest.model_validate(data)
    except ValidationError as exc:
        raise EstimateInputError([_field_error(err) for err in exc.errors()]) from None
    errors: list[FieldError] = []
    if request.model is None and request.params is None:
        errors.append(FieldError(field="model", message="give a known model name or params (e.g. 7e9)"))
    if request.model is not None and request.params is None and lookup_model(request.model) is None:
        known = ", ".join(known_model_names())
        errors.append(
            FieldError(
                field="model", message=f"unknown model {request.model!r}; use one of {known}, or give params"
            )
        )
    if request.workload == "training" and request.tokens is None and request.dataset_tokens is None:
        errors.append(
            FieldError(
                field="tokens",
                message="training needs tokens, or datasetTokens and epochs (e.g. tokens: 2e12)",
            )
        )
    if request.tokens is not None and request.dataset_tokens is not None:
        errors.append(FieldError(field="tokens", message="give tokens or datasetTokens x epochs, not both"))
    if errors:
        raise EstimateInputError(errors)
    return request


FIELD_EXAMPLES: Mapping[str, str] = {
    "params": "7e9", "activeParams": "12.9e9", "tokens": "2e12", "datasetTokens": "5e11", "epochs": "3",
    "gpus": "8", "maxHours": "72", "maxCostPerHour": "40", "minTokensPerSecond": "50",
    "precision": "bf16", "workload": "training", "rankBy": "time",
}


def _field_error(err: Mapping[str, Any]) -> FieldError:
    loc = tuple(str(p) for p in err.get("loc", ()))
    path = ".".join(loc) or "(body)"
    if err.get("type") == "extra_forbidden":
        allowed = ", ".join(f.alias or n for n, f in EstimateRequest.model_fields.items())
        return FieldError(field=path, message=f"unknown field; allowed: {allowed}")
    message = f"{err.get('msg', 'invalid')}, got {err.get('input')!r}"
    example = FIELD_EXAMPLES.get(loc[0] if loc else "")
    return FieldError(field=path, message=f"{message}; e.g. {loc[0]}: {example}" if example else message)


def assumptions_for(settings: EstimateSettings, precision: str) -> Assumptions:
    """The numbers and rules behind every estimate, echoed in the answer."""
    return Assumptions(
        mfu=settings.mfu,
        flops_per_param_token=settings.flops_per_param_token,
        scaling_efficiency=settings.scaling_efficiency,
        optimizer_bytes_per_param=settings.optimizer_bytes_per_param,
        activation_overhead=settings.activation_overhead,
        usable_memory_fraction=USABLE_MEMORY_FRACTION,
        bytes_per_param=BYTES_PER_PARAM[precision],
        rules=RULES,
    )


def peak_tflops(accel_type: AcceleratorType, precision: str) -> tuple[float | None, str | None]:
    """(dense peak TFLOPS of one device at `precision`, or None and why not) per rule 2."""
    arch = accel_type.architecture
    dense = accel_type.dense_tflops
    if dense is None:
        return (
            None,
            f"the catalog has no TFLOPS for {accel_type.name}; add bf16TFLOPS for it in accelerators.yaml",
        )
    if precision == "bf16":
        if accel_type.bf16_tflops is None and arch in NO_BF16_ARCHITECTURES:
            return None, f"{accel_type.display_name} ({arch}) has no BF16; use fp16"
        return accel_type.bf16_tflops or dense, None
    if precision == "fp16":
        return accel_type.fp16_tflops or dense, None
    if precision == "fp8":
        if arch not in FP8_ARCHITECTURES:
            return (
                None,
                f"{accel_type.display_name} ({arch or 'unknown architecture'}) has no FP8; use bf16 or fp16",
            )
        return dense * 2, None
    return (dense / 2 if arch in TF32_ARCHITECTURES else dense / 8), None
