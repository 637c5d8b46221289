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
4. Rule 2 over the watch is needed every state generation. `JobTypes` keeps each pod's (job, type)
   and per job the pods of each type, updated from what changed (accel.quota.pod_changes: pods gone,
   new or changed, pods on a node whose hardware changed); only the jobs whose counts changed choose
   again. Another catalog object or `TypeIndex.token` (pending pods' types) starts a fresh count, as
   does a count left half done. It equals `job_types`, the definition, generation after generation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Generator, Mapping

from accel.capacity.inventory import UNDECIDED_TYPE, Inventory, NodeInventory, pod_accelerator_type
from accel.capacity.pod_types import TypeIndex, selectable_types
from accel.cluster.catalog import Catalog
from accel.cluster.job_intent import JobKey, job_key
from accel.cluster.pods import PodView
from accel.quota.ledger import Ledger
from accel.quota.pod_changes import PodChanges
from accel.quota.steps import finish_steps

STEP = 128  # changed pods per step of `JobTypes.update_steps`


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


class JobTypes:
    """`job_types` kept across state generations from what changed (accel.quota.pod_changes): each pod's
    (job, type) and per job the pods of each type; only the jobs whose counts changed choose again.
    One follows one chain of generations (the webhook's contexts), like accel.quota.watch.WatchIds."""

    def __init__(self) -> None:
        self._pods = PodChanges()
        self._catalog: Catalog | None = None
        self._token: frozenset[tuple[str, str, str]] | None = None
        self._entries: dict[int, tuple[JobKey, str]] = {}  # id(pod) -> (job, type) of pods with both
        self._counts: dict[JobKey, dict[str, int]] = {}  # job -> type -> pods
        self._types: dict[JobKey, str] = {}  # job -> its type (rule 2)
        self._folding = False  # an update is between its first and last step
        self._epoch = 0  # updates started: one overtaken by a newer one stops changing the counts

    def update(self, inventory: Inventory, catalog: Catalog) -> dict[JobKey, str]:
        """`job_types(inventory, catalog)`, from what changed since the last update."""
        return finish_steps(self.update_steps(inventory, catalog))

    def update_steps(
        self, inventory: Inventory, catalog: Catalog
    ) -> Generator[None, None, dict[JobKey, str]]:
        """`job_types(inventory, catalog)` in steps of at most STEP changed pods (accel.admission.context
        lets other work run in between); the result is the generator's return value, a new dict."""
        index = inventory.type_index(catalog)  # once per call, not per pod (pydantic private attribute)
        token = index.token
        recount = (
            self._folding  # left half done (or overtaken: `_epoch`)
            or catalog is not self._catalog
            or (token is not self._token and token != self._token)  # pending pods' types may differ
        )
        self._catalog, self._token = catalog, token
        fresh, leaving, entering = self._pods.update(inventory, everything=recount)
        if fresh:
            self._entries, self._counts, self._types = {}, {}, {}
        self._folding, self._epoch = True, self._epoch + 1
        epoch, entries, counts = self._epoch, self._entries, self._counts
        changed: set[JobKey] = set()
        for start in range(0, len(leaving), STEP):
            if start:
                yield
                if self._epoch != epoch:
                    return job_types(inventory, catalog)
            for pod in leaving[start:start + STEP]:
                found = entries.pop(id(pod), None)
                if found is not None:
                    job, accel_type = found
                    per_job = counts[job]
                    per_job[accel_type] -= 1
                    if not per_job[accel_type]:
                        del per_job[accel_type]
                    changed.add(job)
        nodes = self._pods.node_index
        for start in range(0, len(entering), STEP):
            if start or leaving:
                yield
                if self._epoch != epoch:
                    return job_types(inventory, catalog)
            for pod in entering[start:start + STEP]:
                pod_job = job_of(pod.namespace, pod.labels)
                if pod_job is None:
                    continue
                node = nodes.get(pod.node_name) if pod.node_name else None
                pod_type = _type_of(pod, node, index)
                if pod_type:
                    entries[id(pod)] = (pod_job, pod_type)
                    of_job = counts.setdefault(pod_job, {})
                    of_job[pod_type] = of_job.get(pod_type, 0) + 1
                    changed.add(pod_job)
        types = self._types
        for job in changed:
            tally = counts.get(job)
            if tally:
                types[job] = min(tally, key=lambda t: (-tally[t], t))
            else:
                counts.pop(job, None)
                types.pop(job, None)
        self._folding = False
        return dict(types)  # a copy: the context keeps it while the next generation changes `_types`


def _type_of(pod: PodView, node: NodeInventory | None, index: TypeIndex) -> str:
    """`chosen_type` (`pod_accelerator_type`) with the pod's node and the type index looked up once per
    generation by the caller: the same rule, the node's type else the one its node selection allows."""
    if node is not None and node.accelerator_type:
        return node.accelerator_type
    types = selectable_types(pod.required_terms, pod.node_selector, index)
    return next(iter(types)) if types is not None and len(types) == 1 else UNDECIDED_TYPE


def ledger_job_type(ledger: Ledger, job: JobKey, *, now: float) -> str | None:
    """Rule 2 over the ledger: the type of the job's newest live reservation."""
    namespace, name = job
    live = [r for r in ledger.reservations.values()
            if r.job == name and r.namespace == namespace and r.expires > now and r.type]  # "": undecided
    return max(live, key=lambda r: (r.created, r.id)).type if live else None


def job_type(job: JobKey, known: Mapping[JobKey, str], ledger: Ledger, *, now: float) -> str | None:
    """Rule 2: the watch first, then the ledger."""
    return known.get(job) or ledger_job_type(ledger, job, now=now)
