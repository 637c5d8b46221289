"""Apply the estimate RULES (accel/estimates/rules.py) to every hardware profile, then rank.

`estimate(request, parsed, visible=...)` is the one entry point: the API, `accel estimate` and the
web page all call it. Ranking: profiles that fit in memory, are supported and meet every limit
get ranks 1..n (by time or by cost); the rest follow unranked, each with the reasons why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from accel.cluster.catalog import AcceleratorType, Catalog
from accel.estimates.models_table import lookup_model
from accel.estimates.rules import (
    BYTES_PER_PARAM,
    USABLE_MEMORY_FRACTION,
    EstimateInputError,
    EstimateRequest,
    EstimateResult,
    FieldError,
    ProfileEstimate,
    assumptions_for,
    peak_tflops,
)
from accel.policy.models import EstimateSettings, ParsedPolicy, Profile, Sharing
from accel.profiles.availability import profile_price, unit_price_fraction

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class _Job:
    """The request resolved to numbers."""

    params: float
    active_params: float
    tokens: float | None
    precision: str
    gpus: int | None
    training: bool
    settings: EstimateSettings


def _resolve(request: EstimateRequest, settings: EstimateSettings) -> _Job:
    known = lookup_model(request.model) if request.model else None
    params = request.params or (known.params if known else 0.0)
    active = request.active_params or (known.active_params if known and not request.params else params)
    tokens = request.tokens or (request.dataset_tokens * request.epochs if request.dataset_tokens else None)
    return _Job(params, min(active, params), tokens, request.precision, request.gpus,
                request.workload == "training", settings)


def _selected(
    request: EstimateRequest, parsed: ParsedPolicy, visible: frozenset[str] | None
) -> list[Profile]:
    shown = [p for p in parsed.policy.profiles if visible is None or p.name in visible]
    if request.profiles is None:
        return shown
    by_name = {p.name: p for p in shown}
    errors = [
        FieldError(
            field=f"profiles[{i}]", message=f"unknown profile {name!r}; choose from {', '.join(by_name)}"
        )
        for i, name in enumerate(request.profiles)
        if name not in by_name
    ]
    if errors:
        raise EstimateInputError(errors)
    return [by_name[name] for name in request.profiles]


def _throughput(
    job: _Job, accel_type: AcceleratorType, fraction: float, gpus: int
) -> tuple[float | None, str | None]:
    peak, why = peak_tflops(accel_type, job.precision)
    if peak is None:
        return None, why
    efficiency = job.settings.scaling_efficiency if gpus > 1 else 1.0
    return peak * fraction * job.settings.mfu * gpus * efficiency * 1e12, None


def _hours(job: _Job, flops_per_second: float) -> float | None:
    if job.tokens is None:
        return None
    return (
        job.settings.flops_per_param_token
        * job.active_params
        * job.tokens
        / flops_per_second
        / SECONDS_PER_HOUR
    )


def _unit_memory_gb(profile: Profile, accel_type: AcceleratorType, fraction: float) -> float:
    if profile.sharing is Sharing.MIG and profile.mig_profile:
        return float(profile.mig_profile.split(".", 1)[1].split("gb", 1)[0])
    return accel_type.memory_gb * fraction


def _memory_needed_gb(job: _Job) -> float:
    """Total memory the job needs over all GPUs (rule 3 for training, rule 4 for serving), in GB."""
    weight = BYTES_PER_PARAM[job.precision]
    per_param = 2 * weight + job.settings.optimizer_bytes_per_param if job.training else weight
    return job.params * per_param * (1 + job.settings.activation_overhead) / 1e9


def _unit_name(profile: Profile) -> str:
    if profile.sharing is Sharing.MIG:
        return f"{profile.mig_profile} slice"
    return "replica" if profile.sharing is Sharing.TIME_SLICED else "GPU"


def _one(profile: Profile, job: _Job, catalog: Catalog) -> ProfileEstimate:
    base = ProfileEstimate(
        profile=profile.name,
        display_name=profile.title,
        accelerator_type=profile.types[0] if profile.types else None,
        gpus=job.gpus or max(1, profile.gpus.default),
        unit=_unit_name(profile),
        supported=False,
    )
    if not profile.enabled:
        return base.model_copy(update={"excluded_because": ("profile is disabled",)})
    accel_type = catalog.get(profile.types[0]) if profile.types else None
    if accel_type is None:
        reason = (
            "generic profile (any GPU type): estimate a profile with a fixed type"
            if profile.is_generic
            else "type not in catalog"
        )
        return base.model_copy(update={"excluded_because": (reason,)})
    fraction = float(unit_price_fraction(profile, catalog))
    gpus = _job_size(job, _unit_memory_gb(profile, accel_type, fraction))
    per_pod = profile.gpus.max
    pods = math.ceil(gpus / per_pod) if per_pod else 1
    notes = (f"over the profile's max of {per_pod} {base.unit}s per pod: {pods} pods",) if pods > 1 else ()
    base = base.model_copy(
        update={
            "gpus": gpus,
            "gpus_sized_to_fit": job.gpus is None,
            "max_per_pod": per_pod,
            "pods": pods,
            "notes": notes,
        }
    )
    flops, why = _throughput(job, accel_type, fraction, gpus)
    if flops is None:
        return base.model_copy(update={"excluded_because": (str(why),)})
    return _fill(base, profile, job, catalog, accel_type, fraction, flops)


def _job_size(job: _Job, unit_memory_gb: float) -> int:
    """Units per job: the requested count, else the fewest units that hold the model.

    Without `gpus` in the request every profile is sized for the job instead of taking its pod
    default: a 70B model on one GPU "does not fit" and takes decades, which answers nothing. The
    profile's `gpus.max` is per pod, so a larger job is not refused, only said to span pods.
    """
    if job.gpus is not None:
        return job.gpus
    fewest = (
        math.ceil(_memory_needed_gb(job) / (unit_memory_gb * USABLE_MEMORY_FRACTION))
        if unit_memory_gb > 0
        else 1
    )
    return max(1, fewest)


def _fill(base: ProfileEstimate, profile: Profile, job: _Job, catalog: Catalog, accel_type: AcceleratorType,
          fraction: float, flops: float) -> ProfileEstimate:
    gpus = base.gpus
    unit_memory = _unit_memory_gb(profile, accel_type, fraction)
    needed = _memory_needed_gb(job)
    fits = needed / gpus <= unit_memory * USABLE_MEMORY_FRACTION
    min_gpus = math.ceil(needed / (unit_memory * USABLE_MEMORY_FRACTION)) if unit_memory > 0 else None
    bandwidth = accel_type.memory_bandwidth_tbps
    efficiency = job.settings.scaling_efficiency if gpus > 1 else 1.0
    tokens_per_second = (
        gpus * bandwidth * 1e12 * fraction * efficiency / (job.active_params * BYTES_PER_PARAM[job.precision])
        if bandwidth else None
    )
    price, _ = profile_price(profile, catalog)
    cost_per_hour = price * fraction * gpus if price is not None else None
    hours = _hours(job, flops)
    by_type = {}
    for other in profile.types[1:]:
        other_type = catalog.get(other)
        other_flops = _throughput(job, other_type, fraction, gpus)[0] if other_type else None
        other_hours = _hours(job, other_flops) if other_flops else None
        if other_hours is not None:
            by_type[other] = _round(other_hours)
    return base.model_copy(
        update={
            "supported": True,
            "hours": _round(hours) if job.training and hours is not None else None,
            "hours_by_type": by_type if job.training else {},
            "peak_tflops_per_unit": _round(flops / 1e12 / job.settings.mfu / gpus / efficiency),
            "memory_needed_gb_per_unit": _round(needed / gpus),
            "memory_gb_per_unit": _round(unit_memory),
            "fits": fits,
            "min_gpus_to_fit": min_gpus,
            "tokens_per_second": _round(tokens_per_second) if tokens_per_second else None,
            "price_per_gpu_hour": price,
            "cost_per_hour": _round(cost_per_hour),
            "total_cost": _round(cost_per_hour * hours)
            if cost_per_hour is not None and hours is not None and job.training
            else None,
            "cost_per_million_tokens": _round(cost_per_hour / (tokens_per_second * 3600) * 1e6)
            if cost_per_hour is not None and tokens_per_second
            else None,
        }
    )


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def _limits(est: ProfileEstimate, request: EstimateRequest, training: bool) -> tuple[str, ...]:
    reasons = list(est.excluded_because)
    if est.supported and not est.fits:
        reasons.append(
            f"does not fit: needs {est.memory_needed_gb_per_unit:g} GB per {est.unit}, has "
            f"{est.memory_gb_per_unit:g} GB "
            f"(use at least {est.min_gpus_to_fit} {est.unit}s or a larger type)"
        )
    if request.max_hours is not None and training and est.hours is not None and est.hours > request.max_hours:
        reasons.append(f"takes {est.hours:g} h, over the {request.max_hours:g} h limit")
    if request.max_cost_per_hour is not None and est.supported:
        if est.cost_per_hour is None:
            reasons.append("no price known; set costPerGpuHour on the profile")
        elif est.cost_per_hour > request.max_cost_per_hour:
            reasons.append(f"costs ${est.cost_per_hour:g}/h, over the ${request.max_cost_per_hour:g}/h limit")
    if request.min_tokens_per_second is not None and est.supported:
        tps = est.tokens_per_second or 0.0
        if tps < request.min_tokens_per_second:
            reasons.append(
                f"serves {tps:g} tokens/s, under the {request.min_tokens_per_second:g} tokens/s minimum"
            )
    return tuple(reasons)


def _rank_key(est: ProfileEstimate, rank_by: str, training: bool) -> tuple[float, str]:
    inf = math.inf
    if rank_by == "cost":
        cost = est.total_cost if training else est.cost_per_million_tokens
        return (cost if cost is not None else inf, est.profile)
    if training:
        return (est.hours if est.hours is not None else inf, est.profile)
    return (-(est.tokens_per_second or 0.0), est.profile)


def rank(
    estimates: Iterable[ProfileEstimate], request: EstimateRequest, training: bool
) -> list[ProfileEstimate]:
    """Eligible estimates first, ranked 1..n by time or cost; the rest after, unranked, with reasons."""
    checked = [e.model_copy(update={"excluded_because": _limits(e, request, training)}) for e in estimates]
    eligible = sorted(
        (e for e in checked if not e.excluded_because), key=lambda e: _rank_key(e, request.rank_by, training)
    )
    rest = sorted(
        (e for e in checked if e.excluded_because), key=lambda e: _rank_key(e, request.rank_by, training)
    )
    return [e.model_copy(update={"rank": i}) for i, e in enumerate(eligible, 1)] + rest


def estimate(
    request: EstimateRequest, parsed: ParsedPolicy, *, visible: frozenset[str] | None = None
) -> EstimateResult:
    """Estimates for every (visible, or requested) profile; raises EstimateInputError for unknown profiles."""
    settings = parsed.policy.settings.estimates
    job = _resolve(request, settings)
    profiles = _selected(request, parsed, visible)
    ranked = rank((_one(p, job, parsed.catalog) for p in profiles), request, job.training)
    known = lookup_model(request.model) if request.model else None
    return EstimateResult(
        model=known.name if known else request.model,
        params=job.params,
        active_params=job.active_params,
        workload=request.workload,
        tokens=job.tokens,
        precision=request.precision,
        rank_by=request.rank_by,
        best=ranked[0].profile if ranked and ranked[0].rank == 1 else None,
        estimates=tuple(ranked),
        assumptions=assumptions_for(settings, request.precision),
    )
