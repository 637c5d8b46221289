"""Which pod annotations a pod's author may set: the ONE allowlist (issue 21, "Pod authors are untrusted").

A pod's author is untrusted: anything they write that accel reads back (team, type, quota type,
price, reservation, devices, placement) could change who pays, how much, or where the pod runs.
Rules:
1. The webhook owns every annotation under `accel.dev/` and `accelerator.opendatahub.io/type`,
   except the keys of `AUTHOR_KEYS`: what the author chooses (the profile) and how pods group into
   a job. Keys outside both sets (other vendors' annotations) are none of accel's business.
2. On CREATE the mutating webhook removes every owned annotation it does not write itself in the
   same request, and overwrites the ones it writes (`accel.admission`, rule 8). A second pass over
   its own output recomputes the same values, so reinvocation yields no ops.
3. Validation never reads an owned value as the truth: it recomputes team (namespace label),
   profile, allowed types and charge from the pod spec and policy, and an owned annotation that
   disagrees with that recomputation is a denial (the mutation was skipped or undone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from accel.cluster.pods import ODH_PROFILE_ANNOTATION, PROFILE_ANNOTATION, TYPE_ANNOTATION

OWNED_PREFIX = "accel.dev/"
JOB_ANNOTATION = "accel.dev/job"
JOB_SIZE_ANNOTATION = "accel.dev/job-size"

# Rule 1: the complete list of accel-namespaced annotations a pod's author may set.
AUTHOR_KEYS: frozenset[str] = frozenset(
    {PROFILE_ANNOTATION, ODH_PROFILE_ANNOTATION, JOB_ANNOTATION, JOB_SIZE_ANNOTATION}
)


def is_webhook_owned(key: str) -> bool:
    """Rule 1: whether only accel may write annotation `key` on a pod."""
    if key in AUTHOR_KEYS:
        return False
    return key.startswith(OWNED_PREFIX) or key == TYPE_ANNOTATION


def owned_keys(annotations: Mapping[str, object] | None) -> list[str]:
    """The webhook-owned keys present in `annotations`, in their order."""
    return [key for key in annotations or () if isinstance(key, str) and is_webhook_owned(key)]


def forged_keys(annotations: Mapping[str, object] | None, written: Iterable[str]) -> list[str]:
    """Rule 2: owned keys present that the webhook does not write in this request (to remove)."""
    keep = set(written)
    return [key for key in owned_keys(annotations) if key not in keep]
