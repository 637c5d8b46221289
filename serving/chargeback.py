"""Chargeback counters `accel_gpu_seconds_total` and `accel_gpu_cost_total`, advanced by one replica.

Labels `team, namespace, type, profile` (accel.quota.chargeback rule 4). The API server runs this.
Deduplication rule (README "Chargeback"), one ConfigMap `accel-chargeback` in the controller
namespace, written only by compare-and-swap, holds `holder`, `renewed` and `countedThrough`:
1. Every `interval_s`, each replica reads it. A replica may count when it is the holder, or the
   holder has not renewed for `lease_s` (it died): "one replica counts".
2. The counting replica computes what every bound pod owes for [countedThrough, now) from the
   pods' own start/end times (accel.quota.chargeback), then writes `countedThrough = now` with CAS and
   only after that write succeeded adds the amounts to its counters. A lost race adds nothing.
   So no interval is ever counted twice, across replicas or restarts; a crash between the write
   and the increment loses at most one interval (never double counts).
3. With no `countedThrough` yet (first start ever) counting starts at the earliest start of a
   pod now in the cluster: current pods are charged their whole lifetime, once.
4. Pods deleted between two rounds are kept (object + time the deletion was seen) until the
   watermark passes them, so their last stretch is counted. Every replica keeps them, so a
   replica that takes over mid-interval still has them.
Sum the counters over replicas (`sum by (team, type) (...)`): each interval lives in exactly one
replica's series; a restarted replica's series restarts at 0, which `increase()` treats as a reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from accel.quota.chargeback import LABEL_NAMES, PodCharge, pod_charge, usage_between
from kube.names import CHARGEBACK_CONFIGMAP
from kube.protocol import CasStore, EventType, JsonObject
from serving.cluster_state import ClusterState

log = logging.getLogger(__name__)


class ChargebackCounter:
    """The counters of one replica and the round that advances them (module rules)."""

    def __init__(self, state: ClusterState, store: CasStore, registry: CollectorRegistry, *, identity: str,
                 clock: Callable[[], float] = time.time, lease_s: float = 60.0,
                 configmap: str = CHARGEBACK_CONFIGMAP) -> None:
        self._state = state
        self._configmap = configmap
        self._store = store
        self._identity = identity
        self._clock = clock
        self._lease_s = lease_s
        self._gone: dict[str, tuple[JsonObject, float]] = {}  # rule 4: uid -> (last object, deletion seen at)
        self.gpu_seconds = Counter("accel_gpu_seconds_total", "GPU-equivalent seconds held by bound pods",
                                   LABEL_NAMES, registry=registry)
        self.cost = Counter(
            "accel_gpu_cost_total",
            "cost of the GPU time held by bound pods, in the policy's currency",
            LABEL_NAMES,
            registry=registry,
        )
        self.counted_through: float | None = None
        if state.watcher is not None:
            state.watcher.pods.add_callback(self._pod_changed)

    def _pod_changed(self, event_type: EventType, pod: JsonObject) -> None:
        if event_type == "DELETED":
            meta = pod.get("metadata") or {}
            self._gone[str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")] = (
                pod,
                self._clock(),
            )

    async def round(self) -> bool:
        """One round (rules 1-3); True when this replica counted."""
        data, version = await self._store.read(self._configmap)
        now = self._clock()
        holder, renewed = data.get("holder"), _float(data.get("renewed"))
        if holder and holder != self._identity and renewed is not None and now - renewed < self._lease_s:
            self._forget_before(_float(data.get("countedThrough")))
            return False
        charges = self._charges()
        start = _float(data.get("countedThrough"))
        if start is None:  # rule 3
            start = min((c.start for c in charges), default=now)
        usage = usage_between(charges, start, now) if now > start else {}
        written = {"holder": self._identity, "renewed": repr(now), "countedThrough": repr(max(now, start))}
        if await self._store.write(self._configmap, written, version) is None:
            return False  # another replica counted this interval
        for labels, amount in usage.items():
            self.gpu_seconds.labels(*labels).inc(amount.gpu_seconds)
            self.cost.labels(*labels).inc(amount.cost)
        self.counted_through = max(now, start)
        self._forget_before(self.counted_through)
        return True

    def _charges(self) -> list[PodCharge]:
        if self._state.watcher is None:
            return []
        parsed = self._state.view().parsed
        inventory = self._state.view().inventory
        found = [pod_charge(p, policy=parsed.policy, catalog=parsed.catalog, inventory=inventory)
                 for p in self._state.watcher.pods.items()]
        found += [
            pod_charge(p, policy=parsed.policy, catalog=parsed.catalog, inventory=inventory, deleted_at=at)
            for p, at in self._gone.values()
        ]
        return [c for c in found if c is not None]

    def _forget_before(self, watermark: float | None) -> None:
        if watermark is not None:
            self._gone = {uid: (pod, at) for uid, (pod, at) in self._gone.items() if at >= watermark}


def run_chargeback(
    counter: ChargebackCounter, *, interval_s: float = 15.0
) -> Callable[[web.Application], AsyncIterator[None]]:
    """aiohttp cleanup context: a round every `interval_s` once the state is ready."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not counter._state.ready()[0]:
                continue
            try:
                await counter.round()
            except Exception:  # a failed round is retried next time; the watermark keeps it exact
                log.exception("chargeback round failed; retrying in %gs", interval_s)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(), name="chargeback")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def counter_totals(counter: ChargebackCounter) -> dict[tuple[str, str], tuple[float, float]]:
    """(team, type) -> (GPU-seconds, cost) as this replica's counters hold them (reports, tests)."""
    totals: dict[tuple[str, str], tuple[float, float]] = {}
    for family, index in ((counter.gpu_seconds, 0), (counter.cost, 1)):
        for metric in family.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels["team"], sample.labels["type"])
                pair = list(totals.get(key, (0.0, 0.0)))
                pair[index] += sample.value
                totals[key] = (pair[0], pair[1])
    return totals
