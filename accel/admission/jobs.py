"""Pods of one multi-node job keep one accelerator type (accel.admission.plan rule 7).

Each pod's quota type is otherwise chosen on its own, so a job on a multi-type profile (or a
narrowed generic one) could run half on H100 and half on A100: the slowest type paces the whole
job and NCCL rings cross hardware generations. Rules:
1. A pod's job is (namespace, first present label of `accel.cluster.job_intent.JOB_LABELS`), the same
   key the extender uses for co-location; no label = no job.
2. The job's type is the most common type among its pods the watch shows (the type each is
   charged as, `accel.capacity.inventory.pod_accelerator_type`: its node's, else the one its
   immutable node affinity allows; never an annotation its author could edit after admission;
   ties by name); when the watch shows none, the type of the job's newest live ledger
   reservation (written at validation, so pods admitted but not yet visible count).
3. Mutation charges the pod to that type when it is a candidate and still has quota room;
   otherwise the normal choice, with a warning that the job is split across types.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

from accel.capacity.inventory import Inventory, pod_accelerator_type
from accel.cluster.catalog import Catalog
from accel.cluster.job_intent import JobKey, job_key
from accel.cluster.pods import PodView
from accel.quota.ledger import Ledger


def job_of(namespace: str, labels: Mapping[str, str]) -> JobKey | None:
    """Rule 1."""
    return job_key(namespace, labels)


def chosen_type(pod: PodView, inventory: Inventory, catalog: Catalog) -> str | None:
    """The type already decided for a pod (rule 2); None while undecided."""
    return pod_accelerator_type(pod, inventory, catalog) or None


def job_types(inventory: Inventory, catalog: Catalog) -> dict[JobKey, str]:
    """Rule 2 over the watch, for every job at once (built once per state generation)."""
    counts: dict[JobKey, Counter[str]] = defaultdict(Counter)
    for pod in inventory.pods:
        job = job_of(pod.namespace, pod.labels)
        if job is not None and (accel_type := chosen_type(pod, inventory, catalog)):
            counts[job][accel_type] += 1
    return {job: min(c, key=lambda t: (-c[t], t)) for job, c in counts.items()}


def ledger_job_type(ledger: Ledger, job: JobKey, *, now: float) -> str | None:
    """Rule 2 over the ledger: the type of the job's newest live reservation."""
    namespace, name = job
    live = [r for r in ledger.reservations.values()
            if r.job == name and r.namespace == namespace and r.expires > now and r.type]  # "": undecided
    return max(live, key=lambda r: (r.created, r.id)).type if live else None


def job_type(job: JobKey, known: Mapping[JobKey, str], ledger: Ledger, *, now: float) -> str | None:
    """Rule 2: the watch first, then the ledger."""
    return known.get(job) or ledger_job_type(ledger, job, now=now)
