"""The demo's per-pod steps: admission through the webhooks, then scheduling like kube-scheduler.

Admission: AdmissionReview to `/mutate`, the returned JSON Patch applied (jsonpatch), `/validate`
on the mutated pod, then (if admitted) the pod is created in the in-memory API server. GPU pods are
scheduled like kube-scheduler with an extender (nodeCacheCapable): its own filters
(cli.demo_scheduler), `/filter` with NodeNames, `/prioritize` when 2+ nodes pass, the highest score
(seeded random among ties), `/bind`; the kubelet then starts the pod (phase Running).

Rules:
1. CPU-only pods are never sent to the extender (its managedResources are GPU names): the default
   scheduler binds them to a feasible node itself.
2. At every admission the team's usage per type and in total is recomputed from the API server's
   pods (bound and pending) and recorded, so tests can check quota was never exceeded.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import jsonpatch

from accel.capacity.inventory import Inventory, pod_gpu_equivalents, team_usage
from accel.cluster.pods import PROFILE_ANNOTATION, TYPE_ANNOTATION, PodView, parse_pod
from accel.policy.models import ALL_TYPES
from accel.policy.pricing import COST_ANNOTATION
from cli.demo_io import DriverIO
from cli.demo_records import PodRecord, QuotaCheck
from cli.demo_scheduler import feasible_nodes, select_host, unschedulable_message
from cli.demo_summary import cheaper_type_free, leaf_has_room, observe_shape
from cli.demo_workload import pod_manifest


class PodSteps(DriverIO):
    """Admission and scheduling of one pod at a time; cli.demo_driver.Driver runs them in its day loop."""

    # --- admission ----------------------------------------------------------------------------
    def _deny(self, record: PodRecord, response: dict[str, Any]) -> None:
        status = response.get("status") or {}
        audit = response.get("auditAnnotations") or {}
        record.reason = str(audit.get("decision") or status.get("reason") or "denied")
        record.message = str(status.get("message") or "")
        self.progress.denied += 1

    async def _arrive(self, record: PodRecord) -> None:
        pod = pod_manifest(record.pod)
        user = record.pod.labels.get("user", "someone")
        response = await self._review("/mutate", pod, user)
        if not response.get("allowed"):
            return self._deny(record, response)
        if response.get("patch"):
            ops = jsonpatch.JsonPatch.from_string(base64.b64decode(response["patch"]).decode())
            pod = ops.apply(pod)
        # The API server assigns the uid before validating admission; quota keys its reservation
        # to it (accel.quota.rules invariant 2), and the stored pod keeps it. Derived from the
        # pod's key so a seeded run stays reproducible.
        pod["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"accel-demo/{record.pod.key}"))
        response = await self._review("/validate", pod, user)
        if not response.get("allowed"):
            return self._deny(record, response)
        record.admitted = True
        record.profile = (pod["metadata"].get("annotations") or {}).get(PROFILE_ANNOTATION)
        self.progress.admitted += 1
        self.cluster.apply(pod)
        await self._synced(record.pod.key)
        await self._check_quota(record)
        if record.pod.gpus:
            self.pending.append(record.pod.key)
            if not await self._schedule(record.pod.key):
                self._push(self.now_h + self.options.patience_h, "give-up", record.pod.key)
        else:
            await self._bind_default(record)

    async def _check_quota(self, record: PodRecord) -> None:
        inventory = await self._inventory()
        usage = team_usage(inventory, catalog=self.parsed.catalog, policy=self.parsed.policy).get(
            record.pod.team, {}
        )
        total = sum(usage.values(), Fraction(0))
        self.quota_checks.append(
            QuotaCheck(self.now_h, record.pod.team, record.pod.key, {**usage, ALL_TYPES: total})
        )

    # --- scheduling ---------------------------------------------------------------------------
    async def _retry_pending(self) -> None:
        for key in list(self.pending):
            await self._schedule(key)

    async def _bind_default(self, record: PodRecord) -> None:
        """Rule 1: the default scheduler's own binder."""
        obj = self.cluster.get("pods", record.pod.name, record.pod.namespace)
        assert obj is not None
        names = feasible_nodes(obj, parse_pod(obj), await self._inventory())
        if not names:
            return
        node = select_host(dict.fromkeys(names, 0), self.rng)
        await self.cluster.bind(record.pod.namespace, record.pod.name, obj["metadata"]["uid"], node, {})
        await self._started(record, node)

    async def _schedule(self, key: str) -> bool:
        """One kube-scheduler attempt for a pending GPU pod; True when bound."""
        namespace, name = key.split("/", 1)
        obj = self.cluster.get("pods", name, namespace)
        if obj is None:
            return False
        view, inventory = parse_pod(obj), await self._inventory()
        candidates = feasible_nodes(obj, view, inventory)
        record = self.records[key]
        if not candidates:
            record.waiting = unschedulable_message(obj, view, inventory)
            return False
        passed = await self._post("extender", "/filter", {"Pod": obj, "Nodes": None, "NodeNames": candidates})
        names = [n for n in passed.get("NodeNames") or [] if n in candidates]
        if passed.get("Error") or not names:
            record.waiting = _extender_message(passed, len(candidates))
            return False
        node = names[0]
        if len(names) > 1:
            scores = await self._post(
                "extender", "/prioritize", {"Pod": obj, "Nodes": None, "NodeNames": names}
            )
            by_host = {str(h["Host"]): int(h["Score"]) for h in scores or []}
            node = select_host({n: by_host.get(n, 0) for n in names}, self.rng)
        self._measure_choice(record, view, inventory, names, node)
        bound = await self._post("extender", "/bind", {"PodName": name, "PodNamespace": namespace,
                                                         "PodUID": obj["metadata"]["uid"], "Node": node})
        if bound.get("Error"):
            record.waiting = f"bind failed: {bound['Error']}"
            record.leaf_room, record.cheaper_free, record.order_chose = None, None, False
            return False
        self.pending.remove(key)
        record.waiting = ""
        await self._started(record, node)
        return True

    def _measure_choice(
        self, record: PodRecord, view: PodView, inventory: Inventory, names: list[str], node: str
    ) -> None:
        """cli.demo_summary rules 4 and 5: what was free when the scheduler chose `node`."""
        job = record.pod.job
        if job and not any(r.node for r in self.records.values() if r.pod.job == job):
            size = sum(1 for r in self.records.values() if r.pod.job == job)
            resource, units = max(view.accelerators.items(), key=lambda ru: ru[1], default=("", 0))
            record.leaf_room = leaf_has_room(inventory, names, resource, units, size)
        profile = self.parsed.policy.profile(record.profile) if record.profile else None
        types = profile.types if profile else ()
        chosen = inventory.node(node)
        if profile is not None and len(types) != 1 and chosen is not None and chosen.accelerator_type:
            free = [
                t for n in names if (found := inventory.node(n)) is not None and (t := found.accelerator_type)
            ]
            record.cheaper_free, record.order_chose = cheaper_type_free(
                chosen.accelerator_type, free, types, self.parsed.catalog
            )

    async def _started(self, record: PodRecord, node: str) -> None:
        """The kubelet starts the pod: phase Running; record where, what type, what price."""
        stored = await self._set_phase(record.pod.key, "Running")
        assert stored is not None
        annotations = stored["metadata"].get("annotations") or {}
        inventory = await self._inventory()
        view = parse_pod(stored)
        node_inv = inventory.node(node)
        record.node, record.started_h = node, self.now_h
        record.node_type = node_inv.accelerator_type if node_inv else None
        path = node_inv.accelerators.topology.path("leaf") if node_inv else ()
        record.leaf = "/".join(p for p in path if p) if path and path[-1] else None
        record.accel_type = annotations.get(TYPE_ANNOTATION)
        record.gpus = (
            pod_gpu_equivalents(view, inventory, self.parsed.catalog, self.parsed.policy)
            if view.wants_accelerators
            else Fraction(0)
        )
        record.cost_per_hour = _decimal(annotations.get(COST_ANNOTATION))
        if node_inv is not None and view.wants_accelerators:
            observe_shape(self.histogram, node_inv, view)
        self._push(self.now_h + record.pod.duration_h, "finish", record.pod.key)


def _extender_message(reply: dict[str, Any], offered: int) -> str:
    """The extender's filter answer as one line: its error, or its most common node reason."""
    if reply.get("Error"):
        return f"extender error: {reply['Error']}"
    reasons = Counter(
        {**(reply.get("FailedNodes") or {}), **(reply.get("FailedAndUnresolvableNodes") or {})}.values()
    )
    common = ", ".join(f"{n} {why}" for why, n in reasons.most_common(2))
    return f"extender filtered all {offered} candidate node(s): {common or 'no reason given'}"


def _decimal(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
