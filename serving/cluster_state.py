"""The cluster state every server answers from: the last good policy and an inventory kept
fresh by watches (or fixed, from a snapshot file).

Rules:
1. `view()` is cheap: the inventory is rebuilt only when a watched kind or the policy changed,
   and at most once per `min_rebuild_interval_s` (quota stays exact regardless: admissions in
   flight are held in the reservation ledger until the watch shows the pod).
2. A policy that fails validation never replaces the one in force; the failure is counted and
   logged with every error; `kube.policy_source.PolicySource` (wired to `on_policy`) records the
   Kubernetes Event on the ConfigMap.
3. Every accepted or rejected policy change is written to the audit log (logger
   `accel.audit.policy`): who (newest managedFields manager), when, resourceVersion, result and
   a unified diff against the policy in force. The first policy loaded is summarised instead
   (its full text is in the audit log at debug level).
4. `ready()` is false until every informer has synced and a policy is in force, and false again
   while any watch has been failing for longer than `max_staleness_s`.
5. Every pod uid the watch shows deleted (a DELETED event, or gone at a relist) is remembered for
   the reservation TTL and handed to each inventory (`Inventory.deleted_pods`), so a pod created
   and deleted between two rebuilds still consumes its quota reservation at once (issue 21).
6. A rebuild costs O(objects changed since the last one), not O(pods in the cluster): the
   informers' change callbacks tell an `accel.capacity.inventory.IncrementalInventory` which keys
   changed, and it re-reads just those from the stores at the rebuild (a relist makes it re-read
   the pods' order once). The result equals `build_inventory` of the stores exactly, read in the
   same synchronous step as the watermark; an unchanged pod keeps its PodView object and an
   unchanged node (object and bound pods) its NodeInventory object.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from accel.admission.context import wants_accelerators
from accel.capacity.inventory import IncrementalInventory, Inventory, NodeInventory
from accel.cluster.catalog import Catalog
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy, PolicyInvalid
from accel.quota.ledger import parse_watermark
from kube.hardware_profile_source import HardwareProfileSource
from kube.informer import ClusterWatcher
from kube.names import object_key
from kube.policy_source import PolicyMeta, PolicySource
from kube.protocol import EventType, JsonObject
from serving.metrics import Metrics

log = logging.getLogger(__name__)
audit = logging.getLogger("accel.audit.policy")


@dataclass(frozen=True)
class StateView:
    """One consistent picture: policy in force + inventory, and when it was observed."""

    parsed: ParsedPolicy
    inventory: Inventory
    observed_at: datetime
    generation: int
    watermark: int | None = None  # the pod watch's resourceVersion the inventory reflects (ledger rule 4)


@dataclass
class PolicyChange:
    """Who changed the policy, when, and whether it was accepted."""

    resource_version: str
    manager: str
    changed_at: str
    accepted: bool
    errors: list[str] = field(default_factory=list)
    diff: str = ""


def policy_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """Unified diff, file by file, of two policy file maps."""
    chunks = []
    for name in sorted(set(old) | set(new)):
        lines = difflib.unified_diff(
            old.get(name, "").splitlines(keepends=True),
            new.get(name, "").splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
        chunks.append("".join(lines))
    return "".join(chunks)


class DeletedPods:
    """Uids of pods the watch showed deleted, each for `keep_s` seconds after it went (rule 5).

    The oldest are forgotten first, after `keep_s` or beyond `limit` uids (memory, and the set
    each view unites with its pods, stay bounded under any churn: 20,000 is ~170 GPU pods deleted
    per second for 2 minutes): a forgotten uid only makes its reservation wait for the
    reconciler's grace check (webhook/reconcile.py), never frees one early.
    """

    def __init__(
        self, monotonic: Callable[[], float], *, keep_s: float = 120.0, limit: int = 20_000
    ) -> None:
        self.keep_s = keep_s
        self.limit = limit
        self._monotonic = monotonic
        self._when: OrderedDict[str, float] = OrderedDict()  # uid -> when it went, oldest first
        self._frozen: frozenset[str] | None = frozenset()

    def on_change(self, event_type: str, obj: Mapping[str, object]) -> None:
        """`kube.informer.ChangeCallback` of the pods informer."""
        if event_type != "DELETED" or not wants_accelerators(obj):
            return  # only a pod asking for accelerators ever has a reservation (its requests are immutable)
        metadata = obj.get("metadata")
        uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
        if not isinstance(uid, str) or not uid:
            return
        self._when[uid] = self._monotonic()
        self._when.move_to_end(uid)
        self._frozen = None
        self._forget()

    def _forget(self) -> None:
        horizon = self._monotonic() - self.keep_s
        while self._when and (len(self._when) > self.limit or next(iter(self._when.values())) < horizon):
            self._when.popitem(last=False)
            self._frozen = None

    def uids(self) -> frozenset[str]:
        """The uids remembered now (one frozenset per change, shared between rebuilds)."""
        self._forget()
        if self._frozen is None:
            self._frozen = frozenset(self._when)
        return self._frozen


class ClusterState:
    """Policy + inventory for a server; see module docstring for the rules."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        namespace: str,
        watcher: ClusterWatcher | None = None,
        fixed_policy: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        app_name: str = "accel",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        min_rebuild_interval_s: float = 0.2,
    ) -> None:
        self.namespace = namespace
        self.catalog = catalog
        self.watcher = watcher
        self.metrics = metrics
        self._app = app_name
        self._clock = clock
        self._monotonic = monotonic
        self._min_rebuild = min_rebuild_interval_s
        self._inventory = IncrementalInventory()
        self._pod_relists = 0  # the pods informer's relists the inventory has been resynced after
        self._policy_files: dict[str, str] = {}
        self._offered_files: dict[str, str] | None = None  # the latest ConfigMap data, accepted or not
        self._hardware_profiles: list[dict[str, object]] = []  # OpenDataHub HardwareProfile objects
        self._parsed: ParsedPolicy | None = None
        self._policy_version = 0
        self._view: StateView | None = None
        self._view_key: tuple[int, ...] = ()
        self._built_at = float("-inf")
        self._generation = 0
        self._static_inventory: Inventory | None = None
        self._static_watermark: int | None = None
        self._warned: dict[str, frozenset[str]] = {}  # node -> its warnings already logged
        self.history: list[PolicyChange] = []
        self.policy_source: PolicySource | None = None  # set by the wiring when the policy is watched
        self.hardware_profile_source: HardwareProfileSource | None = None  # likewise, for HardwareProfiles
        self.deleted_pods = DeletedPods(monotonic)
        if watcher is not None:
            watcher.pods.add_callback(self.deleted_pods.on_change)
            watcher.pods.add_callback(self._on_pod)
            watcher.nodes.add_callback(self._on_node)
            watcher.namespaces.add_callback(self._on_namespace)
        if fixed_policy is not None:
            self.apply_policy(
                dict(fixed_policy), PolicyMeta("", "policy files", None, "policy-dir", namespace)
            )

    # --- construction helpers -------------------------------------------------------------
    @classmethod
    def static(
        cls,
        parsed: ParsedPolicy,
        inventory: Inventory,
        *,
        clock: Callable[[], float] = time.time,
        namespace: str = "accel-system",
        watermark: int | None = None,
    ) -> ClusterState:
        """A state that never changes unless `update_static` is called (tests, demo, snapshots)."""
        state = cls(catalog=parsed.catalog, namespace=namespace, clock=clock)
        state._parsed = parsed
        state._static_inventory = inventory
        state._static_watermark = watermark
        state._policy_version = 1
        return state

    def update_static(
        self, parsed: ParsedPolicy | None = None, inventory: Inventory | None = None, *,
        watermark: int | None = None,
    ) -> None:
        """Replace the static policy and/or inventory; `watermark`: the version of the pods the
        inventory shows, as a pod watch's resourceVersion would be (None: no watermark)."""
        if parsed is not None:
            self._parsed = parsed
            self._policy_version += 1
        if inventory is not None:
            self._static_inventory = inventory
            self._static_watermark = watermark
            self._policy_version += 1
        self._view = None

    # --- policy -----------------------------------------------------------------------------
    def on_policy(self, files: dict[str, str], meta: PolicyMeta) -> list[str]:
        """`kube.policy_source.PolicyCallback`: the errors of a rejected policy, [] when accepted.

        The PolicySource records the Kubernetes Event for a rejection; this records the rest.
        """
        return self.apply_policy(files, meta).errors

    def on_hardware_profiles(self, objects: list[dict[str, object]], meta: PolicyMeta) -> list[str]:
        """`kube.hardware_profile_source` callback: re-validate the latest ConfigMap files with
        `objects` (every HardwareProfile now known); the errors, [] when accepted."""
        self._hardware_profiles = list(objects)
        if self._offered_files is None:
            return []  # no ConfigMap yet: the HardwareProfiles join it when it arrives
        return self.apply_policy(self._offered_files, meta).errors

    def apply_policy(self, files: dict[str, str], meta: PolicyMeta) -> PolicyChange:
        """Validate and, if valid, put `files` (+ the known HardwareProfiles) in force; always
        audit-log the attempt.

        The first policy a server loads is logged as a one-line summary (the audit entry carries
        no diff then: there is nothing it changed; the full text goes to the audit logger at
        debug). Later changes carry their unified diff against the policy in force.
        """
        self._offered_files = files
        first = self._parsed is None
        change = PolicyChange(
            resource_version=meta.resource_version,
            manager=meta.changed_by,
            changed_at=meta.changed_at or "",
            accepted=False,
            diff=policy_diff(self._policy_files, files),
        )
        try:
            parsed = parse_policy(files, self.catalog, hardware_profiles=self._hardware_profiles)
        except PolicyInvalid as exc:
            change.errors = [str(e) for e in exc.errors]
            self._count("invalid")
            if first:
                log.error(
                    "policy rejected; no valid policy loaded yet, so this server is not ready until one is "
                    "(`accel policy validate` lists the errors)",
                    extra={"errors": change.errors},
                )
            else:
                log.error(
                    "policy rejected; the last good policy stays in force", extra={"errors": change.errors}
                )
        else:
            change.accepted = True
            self._parsed, self._policy_files = parsed, files
            self._policy_version += 1
            self._count("ok")
            if self.metrics:
                self.metrics.policy_last_good.set(self._clock())
            if first:
                policy = parsed.policy
                log.info(
                    "policy loaded",
                    extra={
                        "source": meta.changed_by or "ConfigMap",
                        "profiles": len(policy.profiles),
                        "teams": len(policy.teams),
                        "mode": policy.settings.mode.value,
                    },
                )
        entry = {
            "resourceVersion": change.resource_version,
            "who": change.manager,
            "when": change.changed_at,
            "accepted": change.accepted,
            "errors": change.errors,
        }
        if first and change.accepted:
            audit.info("policy change", extra=entry)
            audit.debug("initial policy", extra={**entry, "diff": change.diff})
        else:
            audit.info("policy change", extra={**entry, "diff": change.diff})
        self.history = [*self.history[-49:], change]
        return change

    def _count(self, result: str) -> None:
        if self.metrics:
            self.metrics.policy_reload.labels(result=result).inc()

    # --- views ------------------------------------------------------------------------------
    def _key(self) -> tuple[int, ...]:
        if self.watcher is None:
            return (self._policy_version,)
        w = self.watcher
        return (self._policy_version, w.nodes.version, w.pods.version, w.namespaces.version)

    def policy(self) -> ParsedPolicy:
        """The policy in force, without building a view (what a request that needs no cluster
        state reads: the webhook's non-GPU fast path). Raises as `view` does before one is loaded."""
        if self._parsed is None:
            raise RuntimeError(
                "no valid policy loaded yet (see the server log; `accel policy validate` lists the errors)"
            )
        return self._parsed

    def view(self) -> StateView:
        if self._parsed is None:
            raise RuntimeError(
                "no valid policy loaded yet (see the server log; `accel policy validate` lists the errors)"
            )
        key = self._key()
        if self._view is not None and (
            key == self._view_key or self._monotonic() - self._built_at < self._min_rebuild
        ):
            return self._view
        self._generation += 1
        # Read in the same synchronous step as the pods (no await between): the inventory reflects
        # exactly the pod changes up to this version.
        watermark = (
            parse_watermark(self.watcher.pods.resource_version) if self.watcher is not None
            else self._static_watermark
        )
        self._view = StateView(
            parsed=self._parsed,
            inventory=self._build_inventory(self._parsed),
            observed_at=datetime.fromtimestamp(self._clock(), UTC),
            generation=self._generation,
            watermark=watermark,
        )
        self._view_key, self._built_at = key, self._monotonic()
        return self._view

    # rule 6: the watches' changes feed the inventory, which redoes only what they touched
    def _on_pod(self, event_type: EventType, obj: JsonObject) -> None:
        self._inventory.pod_changed(object_key(obj), deleted=event_type == "DELETED")

    def _on_node(self, event_type: EventType, obj: JsonObject) -> None:
        self._inventory.node_changed(object_key(obj))

    def _on_namespace(self, event_type: EventType, obj: JsonObject) -> None:
        self._inventory.namespace_changed(object_key(obj))

    def _build_inventory(self, parsed: ParsedPolicy) -> Inventory:
        if self.watcher is None:
            return self._static_inventory or Inventory()
        w = self.watcher
        # rule 5: remember deleted pods as long as a reservation of theirs may live
        self.deleted_pods.keep_s = max(self.deleted_pods.keep_s,
                                       float(parsed.policy.settings.quota.reservation_ttl_seconds))
        if w.pods.relists != self._pod_relists:  # a relist reorders the store (IncrementalInventory rule 1)
            self._pod_relists = w.pods.relists
            self._inventory.resync()
        inventory = self._inventory.build(
            w.nodes.store(),
            w.pods.store(),
            w.namespaces.store(),
            catalog=parsed.catalog,
            policy=parsed.policy,
            deleted_pods=self.deleted_pods.uids(),
        )
        self._log_new_node_warnings(self._inventory.hardware_changed)
        return inventory

    def _log_new_node_warnings(self, changed: Mapping[str, NodeInventory | None]) -> None:
        """Log each unreadable node status value once (not on every rebuild), e.g. `nvidia.com/gpu: abc`;
        `changed`: the nodes whose hardware the rebuild read again (None: gone), the only ones whose
        warnings can differ."""
        for name in sorted(changed):
            node = changed[name]
            current = frozenset(node.accelerators.warnings) if node is not None else frozenset()
            for warning in sorted(current - self._warned.get(name, frozenset())):
                log.warning("node status value unreadable", extra={"node": name, "problem": warning})
            if current:
                self._warned[name] = current
            else:
                self._warned.pop(name, None)

    def ready(self, max_staleness_s: float | None = None) -> tuple[bool, str]:
        if self._parsed is None:
            return False, "no valid policy loaded yet"
        if self.watcher is None:
            return True, "static state"
        limit = max_staleness_s or self._parsed.policy.settings.api.max_staleness_seconds
        fresh, reason = self.watcher.fresh(limit)
        if self.metrics:
            self.metrics.cluster_state_fresh.labels(app=self._app).set(1 if fresh else 0)
            self.metrics.cluster_state_age.labels(app=self._app).set(self.age_seconds())
        return fresh, reason

    def age_seconds(self) -> float:
        """Seconds since the stalest watched kind was last confirmed (0 for static states)."""
        if self.watcher is None:
            return 0.0
        syncs = [i.last_sync for i in self.watcher.informers]
        if any(s is None for s in syncs):
            return float("inf")
        return max(0.0, self._monotonic() - min(s for s in syncs if s is not None))

    async def run(self) -> None:
        """Run the watches until cancelled (no-op for static states)."""
        if self.watcher is not None:
            await self.watcher.run()
        else:
            await asyncio.Event().wait()
