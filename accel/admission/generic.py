"""Generic-profile narrowing: the concrete types a generic (`accelerators: []`) pod may land on.

`accel.admission.plan` rule 6 is the contract; this module computes it for mutation and checks it again
at validation (defence in depth). Without it a generic pod is a plain GPU request the scheduler
may put on ANY GPU, so a team's `allowedTypes` and per-type quota would only bind pods that name
a typed profile (issue 4: vision ran on H100/H200 and reached 3.25 of its 2 L4 GPUs).

Rules:
1. Restricted team = a known team with `allowedTypes` or a quota on any single type (any key but
   "*"). For everyone else a generic profile stays exactly a plain GPU request (AC-011).
2. Candidates = the accelerator types present on nodes of the inventory, never `unknown` (an
   unlabeled GPU node cannot be matched by node affinity, so a restricted team never lands on
   one), whose catalog `resourceName` is the device the pod asks for (derived names count as
   their device: `nvidia.com/gpu.shared` and `nvidia.com/mig-*` are `nvidia.com/gpu`; so a
   `nvidia.com/gpu` pod only gets NVIDIA types), filtered by `allowedTypes` when set, ordered by
   free units in the cluster (most first, then name).
3. No candidate is a denial naming the team, the resource, the allowed types and the fix.
4. Validation: a generic pod of a restricted team must carry the narrowing: any type annotation
   (`accelerator.opendatahub.io/type`, `accel.dev/quota-type`) names a candidate, and every
   required nodeSelectorTerm restricts the pod to the annotated type (else to the candidates;
   the type itself is fixed at bind, accel.quota invariant 1). Otherwise the mutating
   webhook was skipped or its changes were removed: denied as a bypassed mutation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from accel.admission import messages as msg
from accel.admission.affinity import REQUIRED, AffinityError, restricts
from accel.admission.context import AdmissionContext
from accel.admission.messages import Finding
from accel.capacity.inventory import QUOTA_TYPE_ANNOTATION
from accel.cluster.catalog import UNKNOWN_TYPE
from accel.cluster.pods import TYPE_ANNOTATION, PodView
from accel.policy.models import Profile, Team

SHARED_SUFFIX = ".shared"
NVIDIA_MIG_PREFIX = "nvidia.com/mig-"
NVIDIA_GPU = "nvidia.com/gpu"


def device_resource(resource: str) -> str:
    """The whole-device resource behind a (possibly derived) resource name (rule 2)."""
    if resource.startswith(NVIDIA_MIG_PREFIX):
        return NVIDIA_GPU
    return resource.removesuffix(SHARED_SUFFIX)


def generic_candidates(resources: Iterable[str], team: Team, ctx: AdmissionContext) -> tuple[str, ...]:
    """Rule 2: the candidate types for a generic pod asking for `resources`, best first."""
    wanted = {device_resource(r) for r in resources}
    allowed = team.allowed_types
    found = [
        name
        for name in ctx.present_types
        if name != UNKNOWN_TYPE
        and (allowed is None or name in allowed)
        and (accel_type := ctx.catalog.get(name)) is not None
        and accel_type.resource_name in wanted
    ]
    return tuple(sorted(found, key=lambda name: (-ctx.free_units.get(name, 0), name)))


def no_candidates(team: Team, profile: Profile, resources: Iterable[str]) -> Finding:
    """Rule 3."""
    return msg.no_generic_candidates(team.name, profile.name, sorted(set(resources)), team.allowed_types)


def required_terms(pod: Mapping[str, Any]) -> list[Any]:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get(REQUIRED) or {}
    terms = required.get("nodeSelectorTerms") if isinstance(required, Mapping) else None
    return terms if isinstance(terms, list) else []


def narrowing_finding(
    pod: Mapping[str, Any], view: PodView, *, profile: Profile, team: Team, ctx: AdmissionContext
) -> Finding | None:
    """Rule 4: None when the pod carries the narrowing of rule 2, else why it does not."""
    candidates = generic_candidates(view.accelerators, team, ctx)
    if not candidates:
        return no_candidates(team, profile, view.accelerators)
    annotated = [v for key in (TYPE_ANNOTATION, QUOTA_TYPE_ANNOTATION) if (v := view.annotations.get(key))]
    if outside := [t for t in annotated if t not in candidates]:
        return msg.not_narrowed(
            team.name, profile.name, f"it names type {outside[0]}, not one of {', '.join(candidates)}"
        )
    narrowed = (annotated[0],) if annotated else candidates
    try:
        selector = ctx.selector(profile, narrowed)
    except AffinityError as exc:
        return msg.profile_unusable(profile.name, str(exc))
    terms = required_terms(pod)
    if not terms or not all(isinstance(t, Mapping) and restricts(t, selector) for t in terms):
        return msg.not_narrowed(
            team.name,
            profile.name,
            f"its required node affinity does not restrict it to {', '.join(narrowed)}",
        )
    return None
