"""What a job pod says about its job: how many pods it has and which topology level must hold them.

kube-scheduler calls the extender pod by pod, so the extender reads each pod's job intent from its
labels and annotations and carries it across calls (accel.placement.state keeps the leaf chosen for
a job). This module only reads metadata; it decides nothing.

Rules:
1. The job itself is `job_key`: (namespace, value of the first JOB_LABELS label the pod carries);
   no label, no job. Admission (one type per job) and placement (one leaf per job) both use it.
2. Size: the largest of the declared sizes (`accel.dev/job-size`, Kueue's pod-group total count,
   JobSet's replicated-job replicas), read from labels or annotations; a value that is not a whole
   number in 1..MAX_JOB_SIZE is ignored (the pod author is not trusted to size the cluster). The
   caller takes the larger of this and the job's pods it can see.
3. Level: Kueue's `podset-required-topology` / `podset-preferred-topology` name a node label; it
   maps to the accel level (leaf, spine, zone, node) whose label list holds it, and an unknown
   label maps to `leaf` (the level the extender keeps jobs on anyway). Required wins over
   preferred. Without either annotation a job is held to its leaf softly (preferred).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from accel.cluster.labels import DEFAULT_TOPOLOGY_KEYS

JOB_LABELS: tuple[str, ...] = (
    "accel.dev/job",
    "training.kubeflow.org/job-name",
    "jobset.sigs.k8s.io/jobset-name",
    "kueue.x-k8s.io/pod-group-name",
    "volcano.sh/job-name",
    "scheduling.x-k8s.io/pod-group",
    "pod-group.scheduling.sigs.k8s.io",
)
JOB_SIZE_KEYS: tuple[str, ...] = (
    "accel.dev/job-size",
    "kueue.x-k8s.io/pod-group-total-count",
    "jobset.sigs.k8s.io/replicatedjob-replicas",
)
REQUIRED_TOPOLOGY = "kueue.x-k8s.io/podset-required-topology"
PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"
HOSTNAME_LABEL = "kubernetes.io/hostname"
MAX_JOB_SIZE = 4096

JobKey = tuple[str, str]


def job_key(namespace: str, labels: Mapping[str, str]) -> JobKey | None:
    """Rule 1: (namespace, job id) or None."""
    for label in JOB_LABELS:
        value = labels.get(label)
        if value:
            return (namespace, value)
    return None


Level = Literal["node", "leaf", "spine", "zone"]


@dataclass(frozen=True, slots=True)
class JobIntent:
    """A job pod's declared size (0 = not declared), the level its pods should share, and whether
    that level is required (filter) or only preferred (score)."""

    size: int = 0
    level: Level = "leaf"
    required: bool = False


def declared_size(labels: Mapping[str, str], annotations: Mapping[str, str]) -> int:
    """Rule 2: the largest valid declared size, 0 when none is."""
    best = 0
    for key in JOB_SIZE_KEYS:
        for source in (labels, annotations):
            value = source.get(key, "").strip()
            if value.isdigit() and 1 <= int(value) <= MAX_JOB_SIZE:
                best = max(best, int(value))
    return best


def level_of_label(label: str, keys: Sequence[tuple[str, tuple[str, ...]]] = DEFAULT_TOPOLOGY_KEYS) -> Level:
    """Rule 3: the accel level a node label belongs to."""
    if label == HOSTNAME_LABEL:
        return "node"
    for level, labels in keys:
        if label in labels and level in ("leaf", "spine", "zone"):
            return level  # type: ignore[return-value]  # narrowed by the membership test
    if label in dict(keys).get("core", ()) or label in dict(keys).get("region", ()):
        return "zone"  # accel compares no wider level; a zone is the widest it keeps a job in
    return "leaf"


def job_intent(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    keys: Sequence[tuple[str, tuple[str, ...]]] = DEFAULT_TOPOLOGY_KEYS,
) -> JobIntent:
    """Rules 2 and 3 for one pod."""
    size = declared_size(labels, annotations)
    required = annotations.get(REQUIRED_TOPOLOGY, "").strip()
    if required:
        return JobIntent(size, level_of_label(required, keys), True)
    preferred = annotations.get(PREFERRED_TOPOLOGY, "").strip()
    return JobIntent(size, level_of_label(preferred, keys) if preferred else "leaf", False)
