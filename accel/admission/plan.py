"""Admission decisions for pods: `mutate` (plan the patch) and the mode rules shared with validation.

The mutating step turns "I want profile X" into a concrete pod (design.md, "Decisions the webhook
makes"); `accel.admission.validate` checks the result. Both are pure: state comes in as an
`AdmissionContext`, decisions go out; the webhook only renders them.

Rules of `mutate`:
1. Pass through untouched, without reading any state: excluded namespaces; pods that ask for no
   accelerator and name no profile.
2. Unknown/disabled profile, a profile the team may use no type of, and a pod node constraint that
   contradicts the profile are denied (with the fix). A GPU pod that names no profile gets the
   first default the team may use (accel.admission.resolve) and is then governed like any other
   (routed, narrowed, charged, annotated); with no usable default it is denied, listing the
   profiles the team may use (only a policy without any profile leaves it a plain request).
3. Multi-type profiles (accel.quota.rules invariant 1: the type is fixed at bind, where the capacity
   is): the required affinity keeps every allowed type that still has quota room on its own type
   line (usage = watch + this replica's last ledger; all of them when none has: validation then
   denies), and the preferred terms keep the profile's order, so the scheduler lands the pod on
   the first type in preference order that can hold it on one node, with the pod's own
   selectors, affinity and tolerations. No type is pinned at admission; when exactly one type is
   possible it is written to `accelerator.opendatahub.io/type` (then the pod is typed at once).
4. `spec.nodeName` set by the author (the pod skips the scheduler and the extender) is a
   one-node affinity: a node the inventory does not know, or whose type the profile/team does not
   allow, is denied; otherwise the pod is typed and priced as that node's real type. No
   reservation id is written: quota keys reservations to the pod's uid (accel.quota.rules invariant 2).
5. A second pass over the mutated pod yields no ops (every step is "make it so", never "append").
6. Generic profiles (`accelerators: []`; accel.admission.generic): for an unknown team, or a team
   with neither `allowedTypes` nor a per-type quota (only "*" or nothing), the pod stays exactly a
   plain GPU request (AC-011). Otherwise it is narrowed to candidate types: the types present on
   cluster nodes (never `unknown`: unlabeled GPUs cannot be matched by node affinity, so a
   restricted team never lands on them) whose catalog resourceName is the device the pod asks for,
   filtered by `allowedTypes`, ordered by free units (most first, then name); no candidate is a
   denial. Then exactly rule 3 over the candidates (required affinity over the candidates with
   quota room, preferred in that order). Validation denies a generic pod of a restricted team
   that lacks the narrowing (bypassed mutation).
7. Jobs (accel.admission.jobs): in rule 3, pods of one job (namespace + first JOB_LABELS label)
   are restricted to the type the job already uses (watch, else ledger) while it has quota room;
   otherwise rule 3, with a warning that the job may be split across types.

8. The webhook owns every `accel.dev/*` annotation and `accelerator.opendatahub.io/type` except
   the author keys of accel.admission.author_keys: each one the author set is overwritten with accel's value
   or removed (also when the pod is denied, so warn mode admits it scrubbed). A second pass
   recomputes the same values, so reinvocation adds no op.
9. The pod's accelerator resources must be ones its profile gives (accel.admission.resources rule 4):
   a plain `nvidia.com/gpu` is renamed to the profile's resource; anything else is denied.

Modes (settings.mode): `enforce` denies; `warn` admits with the denial as a warning, still
mutates, and never writes the ledger; `dry-run` admits everything, sends no patch, and records the
would-be decision only in audit annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from accel.admission import messages as msg
from accel.admission.affinity import PREFERRED, REQUIRED, AffinityError, plan_affinity
from accel.admission.author_keys import forged_keys, owned_keys
from accel.admission.context import (
    AdmissionContext,
    accelerator_requests,
    shape_errors,
    wants_accelerators,
)
from accel.admission.generic import generic_candidates, no_candidates
from accel.admission.jobs import job_of, job_type
from accel.admission.messages import Finding
from accel.admission.patches import Op, PatchBuilder
from accel.admission.resolve import allowed_types, no_profile_finding, resolve_profile, resolve_team
from accel.admission.resources import (
    add_default_count,
    ensure_limits,
    match_resources,
    rename_resources,
    target_resource,
)
from accel.cluster.pods import PROFILE_ANNOTATION, TYPE_ANNOTATION
from accel.policy.kueue import QUEUE_LABEL, is_queued
from accel.policy.models import Mode, Profile, Team
from accel.quota.ledger import Ledger
from accel.quota.rules import has_type_quota, is_restricted, team_usage_now, type_room

TEAM_ANNOTATION = "accel.dev/team"
NODE_AFFINITY = ("spec", "affinity", "nodeAffinity")


@dataclass(frozen=True)
class Decision:
    """One admission answer before rendering. `reason` is a stable code; `finding` explains a denial."""

    allowed: bool
    reason: str
    profile: str = ""
    team: str = ""
    finding: Finding | None = None
    ops: tuple[Op, ...] = ()
    document: Mapping[str, Any] | None = None  # the pod after `ops` (None when untouched)
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)
    warned: bool = False

    @property
    def outcome(self) -> str:
        """`allowed`, `denied` or `warned` (the metric's decision label)."""
        return "warned" if self.warned else ("allowed" if self.allowed else "denied")


def passthrough(reason: str) -> Decision:
    return Decision(True, reason)


def deny(finding: Finding, *, profile: str = "", team: str = "") -> Decision:
    return Decision(False, finding.reason, profile, team, finding)


def apply_mode(decision: Decision, mode: Mode) -> Decision:
    """Module docstring "Modes": turn a raw decision into what the mode answers."""
    audit = {"decision": decision.reason}
    if decision.profile:
        audit["profile"] = decision.profile
    if decision.team:
        audit["team"] = decision.team
    audit.update(decision.audit)
    if mode is Mode.DRY_RUN:
        audit["decision"] = f"would-{'allow' if decision.allowed else 'deny'}-{decision.reason}"
        if decision.ops:
            audit["would-patch-ops"] = str(len(decision.ops))
        if decision.finding:
            audit["message"] = decision.finding.message
        return replace(decision, allowed=True, ops=(), finding=None, audit=audit, warned=not decision.allowed)
    if mode is Mode.WARN and not decision.allowed and decision.finding is not None:
        warning = msg.warning_text(decision.finding.message)
        audit["decision"] = f"warned-{decision.reason}"
        return replace(
            decision,
            allowed=True,
            finding=None,
            warnings=(*decision.warnings, warning),
            audit=audit,
            warned=True,
        )
    d = decision  # every admission passes here: the constructor is several times faster than `replace`
    return Decision(
        allowed=d.allowed,
        reason=d.reason,
        profile=d.profile,
        team=d.team,
        finding=d.finding,
        ops=d.ops,
        document=d.document,
        warnings=d.warnings,
        audit=audit,
        warned=d.warned,
    )


def _annotate(builder: PatchBuilder, values: Mapping[str, str]) -> None:
    builder.set_members(["metadata", "annotations"], values)


@dataclass(frozen=True, slots=True)
class RoomInputs:
    """What rules 3 and 7 read of one pod; the rest is the ledger and the time (`choose_room`)."""

    profile: Profile
    types: tuple[str, ...]
    team: Team
    namespace: str
    requests: Mapping[str, int]  # the accelerator requests after the renames
    labels: Mapping[str, str]


RoomChoice = tuple[tuple[str, ...], str | None]  # (types kept in the affinity, the job-split warning)


def choose_room(inputs: RoomInputs, ctx: AdmissionContext, ledger: Ledger, now: float) -> RoomChoice:
    """Rules 3 and 7: the allowed types this pod may still land on (quota room on the type's own
    line), in preference order, and, when that leaves the type of the pod's job, the warning."""
    team, types = inputs.team, inputs.types
    amounts = ctx.type_amounts(inputs.profile, types, inputs.requests)  # memoised per request shape
    usage = team_usage_now(team.name, ctx.usage, ledger, visible=ctx.visible, now=now)
    job = job_of(inputs.namespace, inputs.labels)
    earlier = job_type(job, ctx.job_types, ledger, now=now) if job else None
    if earlier in amounts and type_room(team, str(earlier), amounts[str(earlier)], usage) is None:
        return (str(earlier),), None
    room = tuple(t for t in types if type_room(team, t, amounts[t], usage) is None) or types
    if job is None or not earlier:
        return room, None
    why = f"no {earlier} quota left" if earlier in amounts else f"{earlier} is not allowed for this pod"
    return room, msg.job_split(job[1], earlier, ", ".join(room), why)


def _node_type(
    pod: Mapping[str, Any], types: tuple[str, ...], profile: Profile, team: str, ctx: AdmissionContext
) -> str | Finding | None:
    """Rule 4: the real type of the node an author-set `spec.nodeName` names (None: no nodeName),
    or why the pod may not run there."""
    spec = pod.get("spec") or {}
    name = spec.get("nodeName") if isinstance(spec, Mapping) else None
    if not name:
        return None
    node = ctx.inventory.node(str(name))
    node_type = node.accelerator_type if node is not None else None
    if node is None or not node_type:
        return msg.node_not_accelerator(str(name), profile.name)
    if types and node_type not in types:
        return msg.node_type_not_allowed(str(name), node_type, profile.name, team, types)
    return node_type


def _apply_affinity(
    builder: PatchBuilder, profile: Profile, types: tuple[str, ...], ctx: AdmissionContext
) -> Finding | None:
    try:
        selector = ctx.selector(profile, types)
    except AffinityError as exc:
        return msg.profile_unusable(profile.name, str(exc))
    plan = plan_affinity(builder.document.get("spec") or {}, selector)
    if plan.conflict:
        return msg.affinity_conflict(profile.name, types, plan.conflict)
    if plan.required_terms is not None:
        builder.set([*NODE_AFFINITY, REQUIRED, "nodeSelectorTerms"], plan.required_terms)
    for term in plan.preferred_to_add:
        builder.append([*NODE_AFFINITY, PREFERRED], term)
    return None


def _apply_placement(builder: PatchBuilder, profile: Profile, ctx: AdmissionContext) -> Finding | None:
    existing = builder.get(["spec", "tolerations"]) or []
    for toleration in ctx.tolerations(profile):
        if toleration not in existing:
            builder.append(["spec", "tolerations"], toleration)
    selector = builder.get(["spec", "nodeSelector"]) or {}
    for key, value in profile.node_selector.items():
        if key in selector and selector[key] != value:
            return msg.selector_conflict(profile.name, key, str(selector[key]), value)
        builder.set(["spec", "nodeSelector", key], value)
    if ctx.policy.settings.scheduler_name:
        builder.set(["spec", "schedulerName"], ctx.policy.settings.scheduler_name)
    return None


def _annotations(builder: PatchBuilder, profile: Profile, types: tuple[str, ...], team: str | None,
                 ctx: AdmissionContext, requests: Mapping[str, int]) -> None:
    values = {PROFILE_ANNOTATION: profile.name}
    if len(types) == 1:
        values[TYPE_ANNOTATION] = types[0]
    values.update(ctx.request_prices(profile, types[0] if types else "", requests))
    if team:
        values[TEAM_ANNOTATION] = team
    _annotate(builder, values)
    _scrub(builder, values)


def _scrub(builder: PatchBuilder, written: Mapping[str, str]) -> None:
    """Rule 8: remove every webhook-owned annotation the author set that accel does not write now."""
    for key in forged_keys(builder.get(["metadata", "annotations"]), written):
        builder.remove(["metadata", "annotations", key])


def _plain(pod: Mapping[str, Any]) -> Decision:
    """A pod asking for no accelerator passes, but rule 8 holds for it too: an `accel.dev/*` cost,
    team or type its author wrote would otherwise reach FinOps tools that read those annotations."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping) or not owned_keys(annotations):
        return passthrough("no-accelerator")
    builder = PatchBuilder(pod)
    _scrub(builder, {})
    return Decision(True, "no-accelerator", ops=tuple(builder.ops), document=builder.document)


def _denied(pod: Mapping[str, Any], finding: Finding, *, profile: str = "", team: str = "") -> Decision:
    """A denial that still carries rule 8's scrub: warn mode admits the pod, and must not admit
    the author's team, type or price with it (enforce mode sends no patch with a denial)."""
    builder = PatchBuilder(pod)
    _scrub(builder, {})
    return Decision(False, finding.reason, profile, team, finding, ops=tuple(builder.ops),
                    document=builder.document if builder else None)


def mutate(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    ctx: AdmissionContext,
    ledger: Ledger | None = None,
    now: float = 0.0,
) -> Decision:
    """Plan the patch for one pod CREATE (module rules); the result is before `apply_mode`.

    `ledger` is the replica's last-seen quota ledger (no IO here): it only steers which types
    keep a place in the affinity; the binding check happens at validation against the fresh ledger.
    The ledger and `now` are read only by `choose_room` (rules 3 and 7).
    """
    current = ledger or Ledger()
    return _mutate(pod, namespace, ctx, lambda inputs: choose_room(inputs, ctx, current, now))


def _mutate(
    pod: Mapping[str, Any], namespace: str, ctx: AdmissionContext, room: Callable[[RoomInputs], RoomChoice]
) -> Decision:
    """`mutate`, with the quota type choice (rules 3, 7) asked of `room`: every other step is a
    function of (pod, namespace, ctx) alone, which `MutationMemo` relies on."""
    if namespace in ctx.excluded:
        return passthrough("excluded-namespace")
    if not wants_accelerators(pod):
        return _plain(pod)
    if errors := shape_errors(pod):
        return deny(msg.malformed_pod(errors))
    metadata = pod.get("metadata") or {}
    team = resolve_team(namespace, metadata.get("labels") or {}, policy=ctx.policy, inventory=ctx.inventory)
    resolved = resolve_profile(
        metadata.get("annotations") or {}, namespace, team.rules, policy=ctx.policy, inventory=ctx.inventory
    )
    if resolved.finding:
        return _denied(pod, resolved.finding, team=team.name or "")
    profile = resolved.profile
    if profile is None:
        refused = no_profile_finding(
            namespace, team.rules, accelerator_requests(pod), policy=ctx.policy, inventory=ctx.inventory
        )
        if refused is not None:
            return _denied(pod, refused, team=team.name or "")
        scrubbed = PatchBuilder(pod)
        _scrub(scrubbed, {})
        return Decision(True, "no-profile", team=team.name or "", ops=tuple(scrubbed.ops),
                        document=scrubbed.document if scrubbed else None)
    if (
        team.rules is not None
        and team.rules.allowed_profiles is not None
        and profile.name not in team.rules.allowed_profiles
    ):
        refused = msg.profile_not_allowed(team.rules.name, profile.name, team.rules.allowed_profiles)
        return _denied(pod, refused, profile=profile.name, team=team.rules.name)
    types = allowed_types(profile, team.rules)
    if profile.accelerators and not types:  # (`profile.types` builds a tuple on every read)
        allowed = team.rules.allowed_types or () if team.rules else ()
        refused = msg.types_not_allowed(team.name or "", profile.name, profile.types, allowed)
        return _denied(pod, refused, profile=profile.name, team=team.name or "")
    builder = PatchBuilder(pod)
    target = target_resource(profile, types, ctx.catalog)
    if mismatch := match_resources(builder, profile, types, target, ctx.catalog):
        return _denied(pod, mismatch, profile=profile.name, team=team.name or "")
    rename_resources(builder, target)
    ensure_limits(builder, target)
    add_default_count(builder, target, profile.gpus.default)
    # The accelerator requests as renamed; nothing below changes the pod's resources.
    requests = accelerator_requests(builder.document)
    narrowed = profile.is_generic and is_restricted(team.rules)
    if narrowed and team.rules is not None:
        types = generic_candidates(requests, team.rules, ctx)
        if not types:
            return _denied(
                pod, no_candidates(team.rules, profile, requests), profile=profile.name, team=team.rules.name
            )
    warnings: tuple[str, ...] = ()
    # accel.policy.kueue: Kueue owns its quota
    queued = is_queued(metadata.get("labels") or {}, profile, team.rules)
    node_type = _node_type(pod, types, profile, team.name or "", ctx)
    if isinstance(node_type, Finding):
        return _denied(pod, node_type, profile=profile.name, team=team.name or "")
    if node_type is not None:
        types = (node_type,)
    elif team.rules is not None and not queued and len(types) > 1 and has_type_quota(team.rules, types):
        labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
        types, split = room(RoomInputs(profile, types, team.rules, namespace, requests, labels))
        warnings += (split,) if split else ()
    finding = (_apply_affinity(builder, profile, types, ctx) if types else None) or _apply_placement(
        builder, profile, ctx
    )
    if finding:
        return _denied(pod, finding, profile=profile.name, team=team.name or "")
    _annotations(builder, profile, types, team.name, ctx, requests)
    if queued and profile.kueue_local_queue:  # accel.policy.kueue: Kueue's pod integration gates by label
        builder.set_members(["metadata", "labels"], {QUEUE_LABEL: profile.kueue_local_queue})
    if ctx.policy.settings.team_pod_label and team.name:  # cost tools (OpenCost/Kubecost) group by pod label
        builder.set_members(["metadata", "labels"], {ctx.policy.settings.team_pod_label: team.name})
    reason = "mutated" if builder else "unchanged"
    return Decision(
        True,
        reason,
        profile.name,
        team.name or "",
        ops=tuple(builder.ops),
        document=builder.document,
        warnings=warnings,
    )


# What `mutate` reads of a pod (besides the namespace it is given): its mutation part (`mutation_part`).
MUTATION_METADATA = ("labels", "annotations")
MUTATION_SPEC = ("nodeName", "nodeSelector", "affinity", "tolerations", "schedulerName")
MUTATION_CONTAINER = ("name", "resources", "restartPolicy")


def pod_part(
    pod: Mapping[str, Any], metadata_keys: tuple[str, ...], spec_keys: tuple[str, ...],
    container_keys: tuple[str, ...],
) -> dict[str, Any]:
    """The pod with only the named metadata, spec and per-container (containers, initContainers)
    members, in the pod's order: the containers stay where they are (same count, same indices),
    so a JSON Patch planned on the part applies to the pod. Values are the pod's own (not copies),
    and a value of the wrong JSON type is kept as it is, so shape checks see what the pod has."""
    part: dict[str, Any] = {}
    if "metadata" in pod:
        metadata = pod["metadata"]
        if type(metadata) is dict:
            metadata = {k: metadata[k] for k in metadata_keys if k in metadata}
        part["metadata"] = metadata
    if "spec" in pod:
        spec = pod["spec"]
        if type(spec) is dict:
            kept = {k: spec[k] for k in spec_keys if k in spec}
            for name in ("containers", "initContainers"):
                if name in spec:
                    containers = spec[name]
                    kept[name] = [
                        {k: c[k] for k in container_keys if k in c} if type(c) is dict else c
                        for c in containers
                    ] if type(containers) is list else containers
            spec = kept
        part["spec"] = spec
    return part


def mutation_part(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a pod's mutation: labels and annotations; the spec's nodeName, nodeSelector,
    affinity, tolerations and schedulerName; each container's name, resources and restartPolicy.
    Without what differs between the pods of one template: the name and uid the API server sets
    (after mutation; /mutate sees `generateName`), and the service-account token volume
    `kube-api-access-<random>` and its mounts that the ServiceAccount admission plugin adds to
    every pod before the mutating webhooks. Every op `mutate` plans is under these members (and
    their parents, which the part keeps as the pod has them), so the patch planned on the part
    is the pod's patch. `MutationMemo` plans only this part: a step of `mutate` that read anything
    else would see it missing, and the memo tests (planning with the memo equals `mutate` on the
    whole pod, over the golden and fuzz corpora) fail instead of a stale answer reaching a pod."""
    return pod_part(pod, MUTATION_METADATA, MUTATION_SPEC, MUTATION_CONTAINER)


@dataclass
class _Shape:
    """One pod shape's decision: `fixed` when the quota type choice was not asked, else one
    decision per room choice (`inputs` recompute that choice for the current ledger and time)."""

    inputs: RoomInputs | None
    fixed: Decision | None = None
    by_room: dict[RoomChoice, Decision] = field(default_factory=dict)


class MutationMemo:
    """`mutate`, remembered per mutation part for one admission context (one replica holds one).

    Pods of one Deployment, ReplicaSet or Job reach the mutating webhook with the same mutation
    part (`mutation_part`) but never as the same JSON (each has its own service-account token
    volume), and `mutate` is a function of that part, its namespace, the context and, only through
    `choose_room`, the ledger and the time. So:
    1. The key is the mutation part's exact JSON bytes (orjson) and the namespace, and the part
       (never the whole pod) is what is planned, also on a miss; the memo holds only the current
       context's entries (a new state generation or policy starts it empty).
    2. A hit whose plan never asked for the quota type choice returns the remembered decision; one
       that did recomputes `choose_room` with the current ledger and time and returns the decision
       remembered for that choice, else plans the part in full and remembers it too.
    3. A shape's decision is remembered from its second pod on (the first only leaves the hash of
       its key; a collision only remembers a shape one pod early): pods that share no shape keep
       no decision (a pod object tree) alive, which made every later garbage collection slower
       (about +40 % of the planning cost of such pods with 512 remembered).
    4. Bounded: at most MAX_SHAPES shapes and MAX_SEEN keys (then each starts over), and
       MAX_CHOICES choices per shape.
    Decisions carry no `document` (the pod after the ops is each pod's own; the webhook sends
    only the ops) and are shared between the requests of one shape: callers must not modify them.
    A pod that is not plain JSON data is planned whole, without the memo. `last_hit` says whether
    the last answer came from the memo.
    """

    MAX_SHAPES = 64
    MAX_SEEN = 4096
    MAX_CHOICES = 16

    def __init__(self) -> None:
        self._ctx: AdmissionContext | None = None
        self._shapes: dict[tuple[bytes, str], _Shape] = {}
        self._seen: set[int] = set()  # hashes of the keys of pods planned once (rule 3)
        self.hits = 0  # decisions answered from the memo (tests, diagnostics)
        self.last_hit = False

    def mutate(
        self, pod: Mapping[str, Any], *, namespace: str, ctx: AdmissionContext, ledger: Ledger | None = None,
        now: float = 0.0,
    ) -> Decision:
        self.last_hit = False
        if ctx is not self._ctx:
            self._ctx, self._shapes = ctx, {}
        part = mutation_part(pod)
        try:
            key = (orjson.dumps(part), namespace)
        except TypeError:  # not JSON data (never from the API server)
            return _without_document(mutate(pod, namespace=namespace, ctx=ctx, ledger=ledger, now=now))
        current = ledger or Ledger()
        shape = self._shapes.get(key)
        if shape is not None:
            if shape.inputs is None and shape.fixed is not None:
                self.hits, self.last_hit = self.hits + 1, True
                return shape.fixed
            if shape.inputs is not None:
                found = shape.by_room.get(choose_room(shape.inputs, ctx, current, now))
                if found is not None:
                    self.hits, self.last_hit = self.hits + 1, True
                    return found
        asked: list[tuple[RoomInputs, RoomChoice]] = []

        def room(inputs: RoomInputs) -> RoomChoice:
            choice = choose_room(inputs, ctx, current, now)
            asked.append((inputs, choice))
            return choice

        decision = _without_document(_mutate(part, namespace, ctx, room))
        if shape is None and (seen := hash(key)) not in self._seen:  # rule 3: a shape's first pod
            if len(self._seen) >= self.MAX_SEEN:
                self._seen = set()
            self._seen.add(seen)
            return decision
        if shape is None:
            if len(self._shapes) >= self.MAX_SHAPES:
                self._shapes = {}
            shape = self._shapes[key] = _Shape(asked[0][0] if asked else None)
        if not asked:
            shape.fixed = decision
        elif len(shape.by_room) < self.MAX_CHOICES:
            shape.by_room[asked[0][1]] = decision
        return decision


def _without_document(decision: Decision) -> Decision:
    return decision if decision.document is None else replace(decision, document=None)
