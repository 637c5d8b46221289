"""Pod UPDATE: what accel decided at admission stays as accel wrote it (issue 21, defence in depth).

The admission webhooks see pod CREATE only, and a pod's metadata stays editable afterwards
(`kubectl annotate --overwrite`, `kubectl label`). A pod's author is untrusted, so every value
accel reads back from a pod and that could change team, quota, type, price, placement or job
grouping is frozen after admission. Rules of `review_update`:
1. Frozen keys: every annotation under `accel.dev/` (the webhook's own ones AND the author keys of
   accel.admission.author_keys: the profile and the job keys are the author's choice at CREATE
   only), ODH's profile annotation, `accelerator.opendatahub.io/type`, the Kueue queue label
   (accel.policy.kueue: it decides whether accel counts the pod at all) and, when the policy sets
   `teamPodLabel`, that label (OpenCost / Kubecost allocate the pod's cost to the team it names).
2. An UPDATE that adds, changes or removes a frozen key is refused, unless the requesting user is
   one of accel's own identities (`writers`: the extender's service account by default). Every
   other UPDATE (status, finalizers, other labels and annotations) is allowed untouched, so the
   rule never blocks controllers or finalizer removal.
3. A pod that is being deleted may still be changed (finalizer removal may rewrite metadata),
   and changes the webhook can not attribute (no old object) are allowed: this rule is defence in
   depth; the charge never reads these values (accel.capacity.inventory.pod_accelerator_type).
The shipped webhook entry calls this with failurePolicy Ignore (manifests/base/admission).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from accel.admission.author_keys import OWNED_PREFIX, is_webhook_owned
from accel.admission.messages import Finding, shown
from accel.admission.plan import Decision, deny
from accel.cluster.pods import ODH_PROFILE_ANNOTATION, PROFILE_ANNOTATION
from accel.policy.kueue import QUEUE_LABEL

FROZEN_LABELS: frozenset[str] = frozenset({QUEUE_LABEL})
ACCEL_SERVICE_ACCOUNTS = (
    "accel-extender",
    "accel-webhook",
)  # the shipped ones (manifests/base/serviceaccounts.yaml)


def default_writers(namespace: str) -> tuple[str, ...]:
    """Rule 2's default: the usernames of accel's shipped service accounts in `namespace`."""
    return tuple(f"system:serviceaccount:{namespace}:{name}" for name in ACCEL_SERVICE_ACCOUNTS)


def is_frozen_annotation(key: str) -> bool:
    """Rule 1 for annotations."""
    return key.startswith(OWNED_PREFIX) or key == ODH_PROFILE_ANNOTATION or is_webhook_owned(key)


def _strings(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], frozen: Any) -> list[tuple[str, Any, Any]]:
    """(key, old value or None, new value or None) of every frozen key added, changed or removed."""
    keys = sorted({k for k in (*old, *new) if isinstance(k, str) and frozen(k)})
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def _meta(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _strings((pod or {}).get("metadata"))


def _why(key: str, label: bool) -> str:
    if key in (PROFILE_ANNOTATION, ODH_PROFILE_ANNOTATION):
        return "the profile decides the pod's GPU types, quota charge and price"
    if key in FROZEN_LABELS:
        return "it decides whether accel or Kueue charges the pod's quota"
    if label:
        return "cost tools allocate the pod's cost to the team it names (settings.teamPodLabel)"
    if is_webhook_owned(key):
        return "accel writes it (type, price, placement, devices, team) and reads it back"
    return "it groups the pod into a job for placement"


def _shown(value: Any) -> str:
    """The author's value as the message quotes it (escaped and cut, like every denial's)."""
    return "(absent)" if value is None else f'"{shown(value)}"'


def frozen_change(key: str, old: Any, new: Any, *, pod: str, label: bool, others: int = 0) -> Finding:
    """The denial: which key, from what to what, why it is frozen, what to do instead."""
    kind = "label" if label else "annotation"
    more = f" (and {others} more accel key{'s' if others > 1 else ''})" if others else ""
    return Finding(
        "frozen-annotation",
        f"{kind} {key} of pod {pod} cannot be changed after admission "
        f"({_shown(old)} -> {_shown(new)}){more}: "
        f"{_why(key, label)}, so only accel's own service accounts may change it. To run with another "
        f"profile or type, delete the pod and create it again with the {kind} set (or change the "
        "workload's pod template); other annotations and labels stay editable",
    )


def review_update(
    old_pod: Mapping[str, Any] | None,
    new_pod: Mapping[str, Any] | None,
    *,
    username: str,
    writers: Iterable[str],
    team_pod_label: str | None = None,
) -> Decision:
    """Rules 1-3 for one pod UPDATE; `writers` are the usernames that may change frozen keys,
    `team_pod_label` the policy's `teamPodLabel` (frozen too when set)."""
    frozen_labels = FROZEN_LABELS | {team_pod_label} if team_pod_label else FROZEN_LABELS
    if old_pod is None or new_pod is None:
        return Decision(True, "update-unattributed")
    old, new = _meta(old_pod), _meta(new_pod)
    if new.get("deletionTimestamp") or old.get("deletionTimestamp"):
        return Decision(True, "update-deleting")
    changes = [
        (*c, False)
        for c in changed_keys(
            _strings(old.get("annotations")), _strings(new.get("annotations")), is_frozen_annotation
        )
    ]
    changes += [
        (*c, True)
        for c in changed_keys(
            _strings(old.get("labels")), _strings(new.get("labels")), frozen_labels.__contains__
        )
    ]
    if not changes:
        return Decision(True, "update-unfrozen")
    if username in set(writers):
        return Decision(True, "update-by-accel")
    key, before, after, label = changes[0]
    name = f"{new.get('namespace') or old.get('namespace') or ''}/{new.get('name') or old.get('name') or ''}"
    return deny(frozen_change(key, before, after, pod=name, label=label, others=len(changes) - 1))
