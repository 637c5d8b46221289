"""The demo driver's IO: the event queue, API-server writes (as the kubelet would), watch sync, HTTP.

`DriverIO` holds a demo run's state and the plumbing every step uses: writes to the in-memory API
server followed by a wait until every app's watch shows them (so a run is reproducible from its
seed), and POSTs to the apps' endpoints, AdmissionReviews included.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from accel.capacity.inventory import Inventory
from accel.placement.workload_mix import WorkloadHistogram
from accel.policy.models import ParsedPolicy
from cli.demo_records import DemoOptions, PodRecord, Progress, QuotaCheck
from cli.demo_scheduler import SchedulerCache
from cli.demo_servers import Servers
from cli.demo_summary import ClusterSample
from cli.state import CliError
from kube.informer import ClusterWatcher

SYNC_DEADLINE_S = 10.0


class DriverIO:
    """A demo run's state and IO (see module docstring); cli.demo_driver.Driver builds on it."""

    def __init__(
        self,
        servers: Servers,
        session: aiohttp.ClientSession,
        options: DemoOptions,
        parsed: ParsedPolicy,
        watcher: ClusterWatcher,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.servers, self.session, self.options, self.parsed = servers, session, options, parsed
        self.watcher = watcher  # kube-scheduler's informers (its own, like any API client)
        self.cache = SchedulerCache(watcher, parsed)
        self.cluster = servers.cluster
        self.rng = random.Random(options.seed)  # kube-scheduler tie-breaks
        self.uids = random.Random(options.seed + 1)
        self.events: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self.records: dict[str, PodRecord] = {}
        self.pending: list[str] = []
        self.now_h = 0.0
        # Virtual hour 0 (whole hours, so timestamps are exact): the simulated day ends near the run's start.
        self.epoch = math.floor(time.time() / 3600.0) * 3600.0 - 3600.0 * math.ceil(options.day_hours)
        self.samples: list[ClusterSample] = []
        self.quota_checks: list[QuotaCheck] = []
        self.calls: Counter[str] = Counter()
        self.histogram = WorkloadHistogram(half_life=math.inf)
        self.progress = Progress(total=options.pods)
        self.on_progress = on_progress

    # --- the event queue ------------------------------------------------------------------
    def _push(self, t_h: float, kind: str, key: str) -> None:
        heapq.heappush(self.events, (t_h, next(self._seq), kind, key))

    # --- API server + kubelet side -----------------------------------------------------------
    async def _inventory(self) -> Inventory:
        return self.cache.inventory()

    async def _synced(self, key: str) -> None:
        """Wait until every app's pod watch shows the API server's current version of `key`."""
        namespace, name = key.split("/", 1)
        stored = self.cluster.get("pods", name, namespace)
        want = stored["metadata"]["resourceVersion"] if stored else None
        deadline = time.monotonic() + SYNC_DEADLINE_S
        while True:
            seen = [self._watched_rv(state.watcher, key) for state in self.servers.states.values()]
            if self._watched_rv(self.watcher, key) == want and all(rv == want for rv in seen):
                return
            if time.monotonic() > deadline:
                raise CliError(f"demo: watches did not catch up with pod {key} within {SYNC_DEADLINE_S:.0f}s")
            await asyncio.sleep(0)

    @staticmethod
    def _watched_rv(watcher: ClusterWatcher | None, key: str) -> str | None:
        obj = watcher.pods.get(key) if watcher is not None else None
        return obj["metadata"].get("resourceVersion") if obj else None

    def virtual_time(self, t_h: float | None = None) -> float:
        """Epoch seconds of virtual hour `t_h` (default: now): the day ends about when the run started."""
        return self.epoch + 3600.0 * (self.now_h if t_h is None else t_h)

    async def _set_phase(self, key: str, phase: str) -> dict[str, Any] | None:
        """The kubelet's status update, stamped in virtual time (chargeback reads these times)."""
        namespace, name = key.split("/", 1)
        pod = self.cluster.get("pods", name, namespace)
        if pod is None:
            return None
        status = pod.setdefault("status", {})
        status["phase"] = phase
        stamp = datetime.fromtimestamp(self.virtual_time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if phase == "Running":
            status["startTime"] = stamp
            status["conditions"] = [
                *(c for c in status.get("conditions", []) if c.get("type") != "PodScheduled"),
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ]
        elif phase == "Succeeded":
            status["containerStatuses"] = [
                {"name": c.get("name", "main"), "state": {"terminated": {"finishedAt": stamp}}}
                for c in (pod.get("spec") or {}).get("containers") or [{}]
            ]
        stored = self.cluster.apply(pod)
        await self._synced(key)
        return stored

    async def _delete(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        self.cluster.delete("pods", name, namespace)
        await self._synced(key)

    async def _finish(self, key: str) -> None:
        if key in self.records:
            self.records[key].finished_h = self.now_h
        await self._set_phase(key, "Succeeded")
        await self._delete(key)

    # --- HTTP -------------------------------------------------------------------------------
    async def _post(self, component: str, path: str, body: dict[str, Any]) -> Any:
        self.calls[path] += 1
        async with self.session.post(f"{self.servers.urls[component]}{path}", json=body) as resp:
            if resp.status != 200:
                raise CliError(f"demo: POST {path} answered HTTP {resp.status}: {(await resp.text())[:300]}")
            return await resp.json()

    async def _review(self, path: str, pod: dict[str, Any], user: str) -> dict[str, Any]:
        meta = pod["metadata"]
        request = {
            "uid": str(uuid.UUID(int=self.uids.getrandbits(128))),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta["name"], "namespace": meta["namespace"], "operation": "CREATE",
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
        review = await self._post(
            "webhook",
            path,
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request},
        )
        response: dict[str, Any] = review["response"]
        if response.get("uid") != request["uid"]:
            raise CliError(
                f"demo: {path} answered uid {response.get('uid')!r} for request {request['uid']!r}"
            )
        return response
