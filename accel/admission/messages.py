"""Denial and warning texts of the admission webhook: what was asked, the limit, the usage, the fix.

Users meet these as `admission webhook "..." denied the request: <message>` in `kubectl` output or
in a ReplicaSet's FailedCreate event, far from any docs, so each names the object of the rule, the
numbers, and one concrete way out. Reason codes (`Finding.reason`) are stable identifiers for
metrics and audit annotations; the texts may change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from accel.cluster.gpu_equivalents import format_gpus
from accel.policy.models import ALL_TYPES
from accel.quota.rules import QuotaExcess

MAX_WARNING_CHARS = 240  # the API server cuts warnings at 256 runes once their total passes 4096


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken rule: a stable `reason` code, the HTTP-ish `code` and the user-facing message."""

    reason: str
    message: str
    code: int = 403


MAX_SHOWN_CHARS = 80  # an author-written value in a message: enough to recognise it


def shown(value: object) -> str:
    """An author-written value (an annotation: any text, up to 256 KiB) as a message may quote it.

    Messages reach terminals through kubectl and Events, so control and format characters
    (newlines, ANSI escapes, right-to-left overrides) are escaped and a quote cannot end the quoted
    value early; a long value is cut, saying how long it was (issue 21: the author's text must not
    forge lines in an admin's terminal nor flood logs and Events).
    """
    full = value if isinstance(value, str) else repr(value)  # a malformed review's number, list...
    text = full
    if len(full) > MAX_SHOWN_CHARS:
        text = f"{full[:MAX_SHOWN_CHARS]}... ({len(full)} characters)"
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(_escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def _names(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names) or "none"


def unknown_profile(name: str, valid: Sequence[str]) -> Finding:
    return Finding(
        "unknown-profile",
        f'hardware profile "{shown(name)}" does not exist; set annotation accel.dev/profile to one of: '
        f'{_names(valid)}',
        400,
    )


def disabled_profile(name: str, valid: Sequence[str]) -> Finding:
    return Finding(
        "disabled-profile",
        f'hardware profile "{shown(name)}" is disabled by the admin; '
        "set annotation accel.dev/profile to one of: "
        f"{_names(valid)}",
        400,
    )


def affinity_conflict(profile: str, types: Sequence[str], conflict: str) -> Finding:
    return Finding(
        "affinity-conflict",
        f'the pod\'s own node constraint ({conflict}) excludes every node of profile "{profile}" '
        f"(allowed types: {', '.join(types)}); remove that constraint or pick a profile with the type you "
        "need",
        400,
    )


def selector_conflict(profile: str, key: str, pod_value: str, profile_value: str) -> Finding:
    return Finding(
        "affinity-conflict",
        f'nodeSelector {key}={pod_value} contradicts profile "{profile}", which needs {key}={profile_value}; '
        "remove it from the pod",
        400,
    )


def profile_unusable(profile: str, why: str) -> Finding:
    return Finding("profile-unusable", f'profile "{profile}" cannot be applied: {why}', 400)


def missing_labels(required: Sequence[str], missing: Sequence[str]) -> Finding:
    return Finding(
        "missing-labels",
        f"GPU pods must carry the labels {', '.join(required)}; missing: {', '.join(missing)}; add them to "
        "the pod template's metadata.labels",
    )


def team_mismatch(label: str, namespace: str, ns_team: str, pod_team: str) -> Finding:
    return Finding(
        "team-mismatch",
        f'pod label {label}="{pod_team}" disagrees with namespace "{namespace}" which belongs to team '
        f'"{ns_team}"; drop the pod label or set it to "{ns_team}"',
    )


def no_team(namespace: str, label: str, pod_label: str | None = None) -> Finding:
    """`pod_label`: the pod's own team label, which never decides the team (issue 21)."""
    ignored = (
        f' (the pod\'s own label {label}="{pod_label}" does not count: the team comes only from the '
        'namespace)'
        if pod_label
        else ""
    )
    return Finding(
        "no-team",
        f'namespace "{namespace}" has no {label} label, so its GPU quota is unknown{ignored}; ask an admin '
        'to run '
        f"kubectl label namespace {namespace} {label}=<team>",
    )


def no_profile(
    team: str | None, resources: Sequence[str], allowed: Sequence[str], skipped: Sequence[str]
) -> Finding:
    """A GPU pod that names no hardware profile and gets no usable default (issue 14 section 1)."""
    whose = f'team "{team}" may use' if team else "usable profiles"
    why = (
        f"the defaults ({_names(skipped)}) are not allowed for team \"{team}\""
        if skipped and team else "no default profile applies"
    )
    return Finding(
        "no-profile",
        f"pod asks for {', '.join(resources) or 'GPUs'} but names no hardware profile and {why}; "
        f"{whose}: {_names(allowed)}; set annotation accel.dev/profile to one of them (or ask an admin for a "
        "namespace accel.dev/default-profile annotation or a defaultProfile in the policy)",
    )


def resource_mismatch(profile: str, container: str, asked: str, uses: str, why: str) -> Finding:
    """A pod's accelerator resource that the profile cannot give it (issue 14 section 4)."""
    return Finding(
        "resource-mismatch",
        f'container "{container}" asks for {asked}, but profile "{profile}" uses {uses} ({why}); request '
        f'{uses} '
        "instead, or pick a profile that gives what the pod asks for",
    )


def forged_annotation(key: str, value: str, expected: str | None) -> Finding:
    """A webhook-owned annotation that validation's own recomputation disagrees with (issue 21)."""
    should = f'accel computes "{expected}"' if expected else "accel does not set it on a new pod"
    return Finding(
        "forged-annotation",
        f'annotation {key}="{shown(value)}" is set by accel only, and {should}; remove it from the pod '
        "(pod authors may set only accel.dev/profile and the job keys), and check that the mutating webhook "
        "ran",
    )


def unknown_team(team: str, known: Sequence[str]) -> Finding:
    return Finding(
        "unknown-team",
        f'team "{team}" has no entry in the GPU policy (teams.yaml; known teams: {_names(known)}); ask an '
        'admin '
        "to add it",
    )


def profile_not_allowed(team: str, profile: str, allowed: Sequence[str]) -> Finding:
    return Finding(
        "profile-not-allowed",
        f'team "{team}" may not use profile "{profile}"; set annotation accel.dev/profile to one of the '
        f"allowed profiles: {_names(allowed)} (or ask an admin to add it to the team's allowedProfiles)",
    )


def types_not_allowed(team: str, profile: str, types: Sequence[str], allowed: Sequence[str]) -> Finding:
    return Finding(
        "type-not-allowed",
        f'team "{team}" may not use any type of profile "{profile}" ({", ".join(types)}); allowed types: '
        f"{', '.join(allowed) or 'none'}; pick a profile with an allowed type",
    )


def no_generic_candidates(
    team: str, profile: str, resources: Sequence[str], allowed: Sequence[str] | None
) -> Finding:
    """A generic profile for a restricted team with no node type it may use (admission rule 6)."""
    allowed_text = f"allowed types: {', '.join(allowed) or 'none'}" if allowed is not None else "any type"
    return Finding(
        "no-allowed-type",
        f'profile "{profile}" asks for any GPU ({", ".join(resources) or "none"}), but no node in the '
        'cluster has a '
        f'type team "{team}" may use for it ({allowed_text}); GPUs of type "unknown" cannot be targeted by '
        'node '
        "affinity, so a team with allowedTypes or a per-type quota never runs on them; pick a profile with a "
        "specific type, or ask an admin to label the GPU nodes (GPU operator) or extend the team's "
        "allowedTypes",
    )


def node_not_accelerator(node: str, profile: str) -> Finding:
    """An author-set spec.nodeName that names no accelerator node the webhook knows."""
    return Finding(
        "node-not-allowed",
        f'spec.nodeName "{node}" is not an accelerator node known to accel, so profile "{profile}" cannot '
        'run there; '
        "remove spec.nodeName and let the scheduler place the pod",
        400,
    )


def node_type_not_allowed(
    node: str, node_type: str, profile: str, team: str, types: Sequence[str]
) -> Finding:
    """An author-set spec.nodeName on a node whose type the profile/team does not allow."""
    who = f'profile "{profile}"' + (f' for team "{team}"' if team else "")
    return Finding(
        "node-not-allowed",
        f'spec.nodeName "{node}" has {node_type} GPUs, but {who} allows only {", ".join(types)}; '
        "remove spec.nodeName (the scheduler then picks an allowed node) or name a node of an allowed type",
        403,
    )


def not_narrowed(team: str, profile: str, why: str) -> Finding:
    """A generic pod of a restricted team that validation sees without the mutating webhook's narrowing."""
    return Finding(
        "not-narrowed",
        f'pod with generic profile "{profile}" of team "{team}" was not narrowed to the team\'s GPU types '
        'by the '
        f"mutating webhook ({why}); the mutation was skipped or undone: recreate the pod, and check that "
        "no other webhook rewrites accel's node affinity or annotations",
        400,
    )


def job_split(job: str, earlier: str, chosen: str, why: str) -> str:
    """Warning: a multi-node job's pod is charged to another type than the job's earlier pods."""
    return warning_text(
        f'job "{job}" is split across types: earlier pods use {earlier}, this one {chosen} ({why})'
    )


def too_many_gpus(requested: int, limit: int, source: str) -> Finding:
    return Finding(
        "too-many-gpus",
        f"pod asks for {requested} GPUs but {source} allows at most {limit} per pod; lower the request or "
        "split the job into more pods",
    )


def _excess_text(excess: QuotaExcess) -> str:
    what = "GPUs across all types" if excess.key == ALL_TYPES else f"{excess.key} GPUs"
    # Pods that exist ("in use") and admissions not yet visible as pods ("reserved") are told apart:
    # a reservation is freed on its own within seconds when its pod never appears.
    reserved = (
        f", {format_gpus(excess.reserved)} reserved by admissions in flight" if excess.reserved > 0 else ""
    )
    in_use = excess.used - excess.reserved if excess.reserved > 0 else excess.used
    return (
        f"would use {format_gpus(excess.would_use)} of {format_gpus(excess.limit)} {what} "
        f"({format_gpus(in_use)} in use{reserved}, {format_gpus(excess.requested)} requested)"
    )


def quota_exceeded(excess: Sequence[QuotaExcess], suggestions: Sequence[str]) -> Finding:
    """`team "nlp" would use 18 of 16 nvidia-a100-80gb GPUs (16 in use, 2 requested); ask for ...`."""
    fix = (
        f"ask for profile {_names(suggestions)} or free GPUs"
        if suggestions
        else "free GPUs or ask an admin for more quota"
    )
    text = " and ".join(_excess_text(e) for e in excess)
    return Finding("quota-exceeded", f'team "{excess[0].team}" {text}; {fix}')


def ledger_busy(attempts: int) -> Finding:
    return Finding(
        "quota-busy",
        f"the quota ledger changed under {attempts} attempts in a row (many admissions at once); the pod was "
        "not admitted; retry (controllers retry on their own)",
        429,
    )


def ledger_unavailable(error: str) -> Finding:
    return Finding(
        "quota-unavailable",
        f"cannot check GPU quota right now ({error}); the pod was not admitted; retry shortly",
        503,
    )


def malformed_pod(errors: Sequence[str]) -> Finding:
    return Finding("malformed-pod", f"the pod object is not a valid v1 Pod: {'; '.join(errors[:5])}", 400)


def warning_text(message: str) -> str:
    """A finding as a client warning, kept under the API server's per-warning cut."""
    text = f"accel: {message}"
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "..."


def not_narrowed_typed(profile: str, types: Sequence[str]) -> Finding:
    """A typed profile's pod that validation sees without the mutating webhook's node affinity."""
    return Finding(
        "not-narrowed",
        f'pod with profile "{profile}" has no required node affinity restricting it to {", ".join(types)} '
        '(the '
        "mutating webhook writes it; it was skipped or undone): recreate the pod, and check that no other "
        "webhook "
        "rewrites accel's node affinity",
        400,
    )
