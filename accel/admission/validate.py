"""Validation of a (mutated) pod: labels, team, profile and type permissions, size, quota.

Split in two so the quota step can run inside the ledger's compare-and-swap loop:
1. `plan_validation` does every check that needs no ledger and, if they pass and the team has a
   quota that applies, returns a `QuotaRequest` (who, which type, how many GPU-equivalents).
2. `decide_quota(request, ledger, ...)` is the pure decision per CAS attempt
   (`accel.quota.rules.decide_reservation`); `finish_validation` turns its outcome into a `Decision`.

Rules:
1. Same pass-through as mutation (excluded namespace, no accelerator and no profile).
2. Required pod labels (settings.requiredPodLabels), then the team (namespace label; the pod
   label must agree), then the profile and whether the team may use it and any of its types; a
   generic-profile pod of a restricted team must carry the narrowing of accel.admission rule 6
   (accel.admission.generic rule 4), else it is denied as a bypassed mutation.
3. Size: units asked (effective request, accel.cluster.pods) <= profile `gpus.max` and <= settings
   `maxGpusPerPod`.
4. Quota per team per type and "*" (accel.quota). The charged type is what the inventory will
   count for the pod (`accel.capacity.inventory.pod_accelerator_type`), the amount its GPU-equivalents, so
   admission and usage never disagree. A pod whose type the bind fixes (UNDECIDED) is checked on
   "*" and needs room on the type line of at least one type it may use. An author-set
   `spec.nodeName` is charged as that node's real type (accel.admission.plan rule 4, checked again
   here). The reservation id is the pod's uid as the API server assigned it (the validating
   review carries it), never an annotation (accel.quota.rules invariant 2). `dryRun` requests, warn and
   dry-run modes evaluate without reserving (`commit=False`). The reservation records the pod's
   job (accel.admission.jobs), so later pods of the job find its type before the watch shows it.
5. All failed checks of step 2-3 are reported together; the first one names the reason code
   (audit annotation `decision`), and when more than one rule broke, audit annotation `reasons`
   lists every broken rule's code in order (`missing-labels,no-team`), so no code is lost.
6. Nothing mutation wrote is trusted (issue 21; accel.admission.author_keys rule 3): the team is the
   namespace label, the profile is resolved again (a GPU pod with no usable profile is denied as
   in mutation), a typed profile's pod must ask for exactly the profile's resource (mutation
   renames it), and every webhook-owned annotation present must be one mutation computes: the
   team, a type of the profile the team may use (the narrowing check covers generic profiles),
   the price of such a type; any other owned key (devices, placement, unknown ones) is a denial.
   The reservation id is the quota ledger's business (accel.quota).
7. Rules 1-4 read only the pod's planned part (`planned_part`: what the checks read, without what
   the API server makes unique per pod); the pod's identity only names the reservation. So the
   pods of one template are planned once per admission context (`ValidationMemo`), while the
   quota decision runs on the current ledger for each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson

from accel.admission import messages as msg
from accel.admission.affinity import AffinityError, restricts
from accel.admission.author_keys import owned_keys
from accel.admission.context import (
    AdmissionContext,
    light_view,
    shape_errors,
    wants_accelerators,
)
from accel.admission.generic import generic_candidates, narrowing_finding, required_terms
from accel.admission.jobs import job_of
from accel.admission.messages import Finding
from accel.admission.plan import Decision, deny, passthrough, pod_part
from accel.admission.resolve import allowed_types, no_profile_finding, resolve_profile, resolve_team
from accel.admission.resources import mixed_replicas, target_resource
from accel.capacity.inventory import QUOTA_TYPE_ANNOTATION
from accel.cluster.pods import PROFILE_ANNOTATION, TYPE_ANNOTATION, PodView
from accel.policy.kueue import is_queued
from accel.policy.models import ALL_TYPES, Mode, Profile, Team
from accel.policy.pricing import COST_ANNOTATION, PRICE_ANNOTATION
from accel.quota.ledger import Ledger, Reservation
from accel.quota.rules import (
    RESERVATION_ANNOTATION,
    UNDECIDED,
    ReservationOutcome,
    check_quota,
    decide_reservation,
    has_type_quota,
    is_restricted,
)

MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class QuotaRequest:
    """The quota step of one validation: reserve (or, with `commit=False`, only check)."""

    reservation: Reservation
    team: Team
    commit: bool
    candidates: Mapping[str, Fraction] | None = None  # an UNDECIDED pod: type -> amount on it


@dataclass(frozen=True)
class ValidationPlan:
    """`decision` is final when `quota` is None; otherwise it is the allow to give if quota fits."""

    decision: Decision
    quota: QuotaRequest | None = None
    profile: Profile | None = None


def _checks(
    pod: Mapping[str, Any], view: PodView, namespace: str, ctx: AdmissionContext
) -> tuple[list[Finding], Team | None, str, Profile | None]:
    policy = ctx.policy
    findings: list[Finding] = []
    required = policy.settings.required_pod_labels
    if missing := [label for label in required if not view.labels.get(label)]:
        findings.append(msg.missing_labels(required, missing))
    team = resolve_team(namespace, view.labels, policy=policy, inventory=ctx.inventory)
    findings += [team.finding] if team.finding else []
    resolved = resolve_profile(
        view.annotations, namespace, team.rules, policy=policy, inventory=ctx.inventory
    )
    findings += [resolved.finding] if resolved.finding else []
    profile = resolved.profile
    if profile is None and resolved.finding is None and view.accelerators:
        refused = no_profile_finding(
            namespace, team.rules, view.accelerators, policy=policy, inventory=ctx.inventory
        )
        findings += [refused] if refused else []
    units = sum(view.accelerators.values())
    if profile is not None and team.rules is not None:
        allowed = team.rules.allowed_profiles
        if allowed is not None and profile.name not in allowed:
            findings.append(msg.profile_not_allowed(team.rules.name, profile.name, allowed))
        if profile.accelerators and not allowed_types(profile, team.rules):
            findings.append(
                msg.types_not_allowed(
                    team.rules.name, profile.name, profile.types, team.rules.allowed_types or ()
                )
            )
        if profile.is_generic and is_restricted(team.rules):
            narrowing = narrowing_finding(pod, view, profile=profile, team=team.rules, ctx=ctx)
            findings += [narrowing] if narrowing else []
    findings += _owned_findings(pod, view, profile, team.rules, team.name, ctx)
    node_name = view.node_name
    if node_name and profile is not None:
        node = ctx.inventory.node(node_name)
        node_type = node.accelerator_type if node is not None else None
        types = _possible_types(view, profile, team.rules, ctx)
        if node is None or not node_type:
            findings.append(msg.node_not_accelerator(node_name, profile.name))
        elif types and node_type not in types:
            findings.append(
                msg.node_type_not_allowed(node_name, node_type, profile.name, team.name or "", types)
            )
    if profile is not None and profile.gpus.max is not None and units > profile.gpus.max:
        findings.append(msg.too_many_gpus(units, profile.gpus.max, f'profile "{profile.name}"'))
    cap = policy.settings.max_gpus_per_pod
    if cap is not None and units > cap:
        findings.append(msg.too_many_gpus(units, cap, "the cluster policy (maxGpusPerPod)"))
    return findings, team.rules, team.name or "", profile


TEAM_ANNOTATION = "accel.dev/team"
PRICE_KEYS = (PRICE_ANNOTATION, COST_ANNOTATION)
CHECKED_ELSEWHERE = frozenset({PROFILE_ANNOTATION, RESERVATION_ANNOTATION})


def _affinity_finding(
    pod: Mapping[str, Any], profile: Profile, types: tuple[str, ...], ctx: AdmissionContext
) -> Finding | None:
    """Rule 6: a typed profile's pod must be restricted by its required node affinity to the
    profile's allowed types (mutation wrote it); else the default scheduler could place it on any
    GPU while it is charged to an allowed type."""
    try:
        selector = ctx.selector(profile, types)
    except AffinityError as exc:
        return msg.profile_unusable(profile.name, str(exc))
    terms = required_terms(pod)
    if terms and all(isinstance(t, Mapping) and restricts(t, selector) for t in terms):
        return None
    return msg.not_narrowed_typed(profile.name, types)


def _owned_findings(
    pod: Mapping[str, Any],
    view: PodView,
    profile: Profile | None,
    team: Team | None,
    team_name: str | None,
    ctx: AdmissionContext,
) -> list[Finding]:
    """Rule 6: owned annotations that disagree with what validation recomputes, and a typed
    profile's resource that mutation would have renamed."""
    notes = view.annotations
    present = [key for key in owned_keys(notes) if key not in CHECKED_ELSEWHERE]
    types: tuple[str, ...] = ()
    narrowed = profile is not None and profile.is_generic and is_restricted(team)
    if profile is not None:
        types = (
            generic_candidates(view.accelerators, team, ctx)
            if narrowed and team
            else allowed_types(profile, team)
        )
    findings: list[Finding] = []
    if profile is not None and profile.accelerators:
        target = target_resource(profile, types, ctx.catalog)
        if wrong := sorted(r for r in view.accelerators if r != target):
            findings.append(
                msg.resource_mismatch(
                    profile.name,
                    "(pod)",
                    wrong[0],
                    target,
                    "the mutating webhook renames or refuses it; it was skipped or undone",
                )
            )
    elif profile is not None and (mixed := mixed_replicas(profile, set(view.accelerators))):
        findings.append(mixed)
    findings += _forged(view, present, profile, types, narrowed, team_name, ctx)
    if (
        profile is not None
        and profile.accelerators
        and types
        and ctx.policy.settings.mode is not Mode.DRY_RUN
        and not view.node_name
        and not findings
        and (away := _affinity_finding(pod, profile, types, ctx))
    ):
        findings.append(away)  # last, and only alone: a more specific finding above explains the pod better
    return findings


def _forged(view: PodView, present: list[str], profile: Profile | None, types: tuple[str, ...],
            narrowed: bool, team_name: str | None, ctx: AdmissionContext) -> list[Finding]:
    """Rule 6 for each owned annotation present."""
    notes = view.annotations
    findings: list[Finding] = []
    chosen = [notes[k] for k in (TYPE_ANNOTATION, QUOTA_TYPE_ANNOTATION) if notes.get(k)]
    for key in present:
        value = notes[key]
        if key == TEAM_ANNOTATION:
            if value != (team_name or ""):
                findings.append(msg.forged_annotation(key, value, team_name))
        elif key in (TYPE_ANNOTATION, QUOTA_TYPE_ANNOTATION):
            if value not in types and not narrowed:  # narrowed: the narrowing check reports it
                findings.append(msg.forged_annotation(key, value, " or ".join(types) or None))
        elif key in PRICE_KEYS and profile is not None:
            options = chosen[:1] or list(types) or [""]
            expected = [ctx.request_prices(profile, t, view.accelerators).get(key) for t in options]
            if value not in expected:
                findings.append(msg.forged_annotation(key, value, next((e for e in expected if e), None)))
        else:
            findings.append(msg.forged_annotation(key, value, None))
    return findings
def _possible_types(
    view: PodView, profile: Profile, team: Team | None, ctx: AdmissionContext
) -> tuple[str, ...]:
    """The types the pod may use under its profile and team ((): any), in preference order."""
    if profile.is_generic:
        return (
            generic_candidates(view.accelerators, team, ctx)
            if team is not None and is_restricted(team)
            else ()
        )
    return allowed_types(profile, team)


def _pod_uid(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return str(metadata.get("uid") or "") if isinstance(metadata, Mapping) else ""


# What `plan_validation` reads of a pod besides its identity: the planned part (`planned_part`).
PLANNED_METADATA = ("namespace", "generateName", "labels", "annotations")
PLANNED_SPEC = ("nodeName", "nodeSelector", "affinity", "tolerations")
PLANNED_CONTAINER = ("resources", "restartPolicy")


def planned_part(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod that decides its validation (rules 1-4 before the ledger), without what
    the API server makes unique per pod: its name, uid, timestamps, managed fields, and the
    service-account token volume (`kube-api-access-<random>`) and mounts. Pods of one template then
    share it, and `ValidationMemo` plans them once. Values are the pod's own (not copies), and a
    value of the wrong JSON type is kept as it is, so shape checks see what the pod has.

    `plan_validation` plans only this part (the identity goes into the reservation only), so a
    check that read anything else would see it missing in every test, not only on a memo hit."""
    return pod_part(pod, PLANNED_METADATA, PLANNED_SPEC, PLANNED_CONTAINER)


@dataclass(frozen=True)
class _Planned:
    """`plan_validation`'s result for a planned part in one context: the decision, and when the
    quota applies, everything of the reservation but the pod's identity and the time."""

    decision: Decision
    profile: Profile | None = None
    team: Team | None = None  # set when the quota step applies
    accel_type: str = ""
    amount: Fraction = Fraction(0)
    candidates: Mapping[str, Fraction] | None = None
    job: str = ""


def _plan_part(part: Mapping[str, Any], namespace: str, ctx: AdmissionContext) -> _Planned:
    """Rules 2-3 and rule 4's quota inputs for a planned part (no clock, no ledger, no identity)."""
    if errors := shape_errors(part):
        return _Planned(deny(msg.malformed_pod(errors)))
    view = light_view(part)
    spec = part.get("spec") or {}
    if spec.get("nodeName"):  # accel.admission rule 4: charged as the node's real type
        view = view.model_copy(update={"node_name": str(spec["nodeName"])})
    findings, team, team_name, profile = _checks(part, view, namespace, ctx)
    profile_name = profile.name if profile else ""
    if findings:
        first = findings[0]
        combined = Finding(first.reason, "; ".join(f.message for f in findings), first.code)
        denied = deny(combined, profile=profile_name, team=team_name)
        if len(reasons := list(dict.fromkeys(f.reason for f in findings))) > 1:  # rule 5: every code
            denied = Decision(False, first.reason, profile_name, team_name, combined,
                              audit={"reasons": ",".join(reasons)})
        return _Planned(denied, profile)
    allowed = Decision(True, "allowed", profile_name, team_name)
    if is_queued(view.labels, profile, team):  # accel.policy.kueue rule 1: Kueue owns this pod's quota
        return _Planned(Decision(True, "allowed", profile_name, team_name, audit={"quota": "kueue"}), profile)
    if team is None or not team.quota:
        return _Planned(allowed, profile)
    accel_type, amount = ctx.charge(view)  # = inventory.pod_accelerator_type / pod_gpu_equivalents, memoised
    if amount <= 0 or (
        accel_type not in team.quota
        and ALL_TYPES not in team.quota
        and not (
            accel_type == UNDECIDED
            and profile is not None
            and has_type_quota(team, _possible_types(view, profile, team, ctx))
        )
    ):
        return _Planned(allowed, profile)
    candidates: Mapping[str, Fraction] | None = None
    if accel_type == UNDECIDED and profile is not None:
        types = _possible_types(view, profile, team, ctx)
        if has_type_quota(team, types):
            # gpu_equivalents per type, memoised per policy (read-only: QuotaRequest only reads it)
            candidates = ctx.type_amounts(profile, types, view.accelerators)
    job = job_of(namespace, view.labels)
    return _Planned(allowed, profile, team, accel_type, amount, candidates, job[1] if job else "")


def _plan(
    planned: _Planned, pod: Mapping[str, Any], *, namespace: str, ctx: AdmissionContext, request_uid: str,
    now: float, dry_run: bool,
) -> ValidationPlan:
    """The plan of one request: a planned part's result plus the pod's identity and the time."""
    team = planned.team
    if team is None:
        return ValidationPlan(planned.decision, profile=planned.profile)
    metadata = pod.get("metadata") or {}
    reservation = Reservation(
        # The API server's uid for this pod (accel.quota invariant 2); a review without one (only
        # hand-made ones) falls back to the request uid, which the grace check then releases.
        id=_pod_uid(pod) or request_uid,
        name=str(metadata.get("name") or ""),
        team=team.name,
        type=planned.accel_type,
        amount=planned.amount,
        namespace=namespace,
        created=now,
        expires=now + ctx.policy.settings.quota.reservation_ttl_seconds,
        job=planned.job,
    )
    commit = not dry_run and ctx.policy.settings.mode is Mode.ENFORCE
    request = QuotaRequest(reservation, team, commit, planned.candidates)
    return ValidationPlan(planned.decision, request, planned.profile)


def plan_validation(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    ctx: AdmissionContext,
    request_uid: str,
    now: float,
    dry_run: bool,
) -> ValidationPlan:
    """Rules 1-3 and the quota request of rule 4 (see module docstring)."""
    if namespace in ctx.excluded:
        return ValidationPlan(passthrough("excluded-namespace"))
    if not wants_accelerators(pod):
        return ValidationPlan(passthrough("no-accelerator"))
    planned = _plan_part(planned_part(pod), namespace, ctx)
    return _plan(planned, pod, namespace=namespace, ctx=ctx, request_uid=request_uid, now=now,
                 dry_run=dry_run)


class ValidationMemo:
    """`plan_validation`, remembered per planned part for one admission context (one per replica).

    `plan_validation` is a function of the pod's planned part (`planned_part`), its namespace and
    the context, plus the pod's identity (uid, name), the time and dryRun, which only fill in the
    reservation. So:
    1. The key is the planned part's exact JSON bytes (orjson) and the namespace; the memo holds
       only the current context's entries: a new state generation or policy (a new context object)
       starts it empty, so nothing the watch or a policy change moved is answered from before.
    2. The ledger is never part of what is remembered: the quota decision (`decide_quota`) runs on
       the current ledger for every request, and the reservation is built per request.
    3. Bounded: at most MAX_SHAPES parts (then it starts over). Results are shared between the
       requests of one part: callers must not modify them. A part that is not JSON data (never
       from the API server) is planned without the memo. `last_hit`: the last answer's part came
       from the memo.
    """

    MAX_SHAPES = 256

    def __init__(self) -> None:
        self._ctx: AdmissionContext | None = None
        self._planned: dict[tuple[bytes, str], _Planned] = {}
        self.hits = 0  # plans answered from the memo (tests, diagnostics)
        self.last_hit = False

    def plan(
        self, pod: Mapping[str, Any], *, namespace: str, ctx: AdmissionContext, request_uid: str, now: float,
        dry_run: bool,
    ) -> ValidationPlan:
        self.last_hit = False
        if namespace in ctx.excluded or not wants_accelerators(pod):  # rule 1: nothing to remember
            return plan_validation(pod, namespace=namespace, ctx=ctx, request_uid=request_uid, now=now,
                                   dry_run=dry_run)
        if ctx is not self._ctx:
            self._ctx, self._planned = ctx, {}
        part = planned_part(pod)
        try:
            key = (orjson.dumps(part), namespace)
        except TypeError:  # not JSON data
            planned = _plan_part(part, namespace, ctx)
        else:
            found = self._planned.get(key)
            if found is not None:
                self.hits, self.last_hit = self.hits + 1, True
                planned = found
            else:
                planned = _plan_part(part, namespace, ctx)
                if len(self._planned) >= self.MAX_SHAPES:
                    self._planned = {}
                self._planned[key] = planned
        return _plan(planned, pod, namespace=namespace, ctx=ctx, request_uid=request_uid, now=now,
                     dry_run=dry_run)


def decide_quota(
    request: QuotaRequest, ledger: Ledger, *, ctx: AdmissionContext, now: float
) -> ReservationOutcome:
    """The pure decision of one compare-and-swap attempt."""
    return decide_reservation(
        ledger,
        request.reservation,
        team=request.team,
        base=ctx.usage,
        visible=ctx.visible,
        now=now,
        commit=request.commit,
        candidates=request.candidates,
        watermark=ctx.watermark,
    )


def _suggestions(
    request: QuotaRequest, usage: Mapping[str, Fraction], current: str, ctx: AdmissionContext
) -> list[str]:
    """Other enabled profiles the team may use with a type that has room for the same amount."""
    team, amount, found = request.team, request.reservation.amount, []  # (UNDECIDED: any candidate's amount)
    for profile in ctx.policy.profiles:
        if not profile.enabled or not profile.types or profile.name == current:
            continue
        if profile.gpus.max is not None and profile.gpus.max < amount:
            continue
        if team.allowed_profiles is not None and profile.name not in team.allowed_profiles:
            continue
        if any(not check_quota(team, t, amount, usage) for t in allowed_types(profile, team)):
            found.append(profile.name)
    return found[:MAX_SUGGESTIONS]


def finish_validation(
    plan: ValidationPlan, outcome: ReservationOutcome | Finding, ctx: AdmissionContext
) -> Decision:
    """The final decision once the quota step ran (or failed with a ledger Finding)."""
    base = plan.decision
    if isinstance(outcome, Finding):
        return deny(outcome, profile=base.profile, team=base.team)
    if not outcome.excess or plan.quota is None:
        audit = {"reserved": plan.quota.reservation.id} if plan.quota and plan.quota.commit else {}
        return Decision(True, "allowed", base.profile, base.team, audit=audit)
    suggestions = _suggestions(plan.quota, outcome.usage, base.profile, ctx)
    return deny(msg.quota_exceeded(outcome.excess, suggestions), profile=base.profile, team=base.team)
