"""The demo's day, driven through the real endpoints exactly as kube-apiserver and kube-scheduler would.

Per submitted pod: admission through `/mutate` and `/validate`, then scheduling through the
extender's `/filter`, `/prioritize` and `/bind` (cli.demo_steps); the kubelet's part (phase Running,
later Succeeded, then deletion) is written to the API server so every app's watches see it
(cli.demo_io). The records and the result are in cli.demo_records.

Time: a virtual clock in hours moves event by event (arrivals, finishes, give-ups) through a
priority queue; only HTTP uses real time. After every change the driver waits until all three
apps' watches show it, so a run is reproducible from its seed.

Rules:
1. An admitted pod that no node can take stays Pending (it keeps counting against quota, as on a
   cluster) and is retried after every finish; after `patience_h` its owner deletes it (`gave-up`).
2. The pods the snapshot shows running finish at seeded times in the first `existing_end_h`
   hours (they are not charged: the demo did not start them).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from accel.cluster.pods import parse_pod
from cli.demo_records import DemoOptions, DemoResult, PodRecord, Progress
from cli.demo_servers import Servers
from cli.demo_steps import PodSteps
from cli.demo_summary import ClusterSample, sample_cluster
from cli.demo_workload import DemoPod, generate_workload
from cli.state import CliError
from kube.informer import ClusterWatcher
from serving.chargeback import ChargebackCounter, counter_totals


class Driver(PodSteps):
    """One simulated day against running servers (see module docstring)."""

    counter: ChargebackCounter  # the API server's chargeback counters on virtual time (run_day sets it)
    counter_t_h: float = 0.0  # the virtual hour the counters are advanced to

    # --- the day loop ---------------------------------------------------------------------
    async def run(self, workload: list[DemoPod]) -> None:
        for pod in workload:
            self.records[pod.key] = PodRecord(pod)
            self._push(pod.arrival_h, "arrive", pod.key)
        await self._schedule_existing()
        next_sample = 0.0
        while self.events:
            t_h, _, kind, key = heapq.heappop(self.events)
            while next_sample <= t_h:
                self.samples.append(await self._sample(next_sample))
                next_sample += self.options.sample_every_h
            self.now_h = t_h
            await self._handle(kind, key)
        self.samples.append(await self._sample(max(self.now_h, next_sample)))

    async def _schedule_existing(self) -> None:
        """Rule 2: the pods the snapshot shows running end during the first `existing_end_h` hours."""
        for pod in sorted(
            self.watcher.pods.items(), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])
        ):
            view = parse_pod(pod)
            if view.node_name and not view.terminal:
                self._push(round(self.rng.uniform(0.5, self.options.existing_end_h), 4), "finish", view.key)

    async def _handle(self, kind: str, key: str) -> None:
        if kind == "arrive":
            await self._arrive(self.records[key])
            self.progress.done += 1
            if self.on_progress:
                self.on_progress(self.progress)
        elif kind == "finish":
            await self._finish(key)
            await self._retry_pending()
        elif kind == "give-up" and key in self.pending:
            self.pending.remove(key)
            await self._delete(key)

    async def _sample(self, t_h: float) -> ClusterSample:
        self.counter_t_h = t_h
        await self.counter.round()  # the chargeback counters advance up to this sample (virtual time)
        return sample_cluster(t_h, await self._inventory(), self.parsed.catalog, self.histogram)

    # --- the API, as each team's users see it ----------------------------------------------------
    async def team_views(self) -> dict[str, list[str]]:
        """`GET /api/hardware-profiles` with each team's token: the profiles that team sees."""
        views: dict[str, list[str]] = {}
        for team in self.parsed.policy.teams:
            token = f"demo-token-{team.name}"
            self.cluster.add_token(token, f"demo-{team.name}", (f"team:{team.name}",))
            self.calls["/api/hardware-profiles"] += 1
            async with self.session.get(f"{self.servers.urls['api']}/api/hardware-profiles",
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status != 200:
                    raise CliError(
                        f"demo: GET /api/hardware-profiles answered HTTP {resp.status}: "
                        f"{(await resp.text())[:300]}"
                    )
                body = await resp.json()
            views[team.name] = [_profile_name(item) for item in body.get("profiles", [])]
        return views


def _profile_name(item: dict[str, Any]) -> str:
    """An item of the hardware-profiles list (ODH shape: metadata.name; flat: name)."""
    return str((item.get("metadata") or {}).get("name") or item.get("name") or "?")


async def run_day(
    servers: Servers, options: DemoOptions, *, on_progress: Callable[[Progress], None] | None = None
) -> DemoResult:
    """Generate the workload from the seed and drive it through `servers`."""
    parsed = servers.states["webhook"].view().parsed
    workload = generate_workload(seed=options.seed, count=options.pods, day_hours=options.day_hours)
    started = time.monotonic()
    watcher = ClusterWatcher(servers.cluster)
    watching = asyncio.create_task(watcher.run(), name="demo-scheduler-informers")
    try:
        await watcher.wait_synced()
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=servers.client_ssl, limit=8)
        ) as session:
            driver = Driver(servers, session, options, parsed, watcher, on_progress)
            # The API server's chargeback counters, on virtual time and their own watermark ConfigMap.
            driver.counter = ChargebackCounter(servers.states["api"], servers.cluster, CollectorRegistry(),
                                               identity="accel-demo", configmap="accel-demo-chargeback",
                                               clock=lambda: driver.virtual_time(driver.counter_t_h))
            await driver.run(workload)
            views = await driver.team_views()
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    outcomes = [driver.records[p.key].outcome(parsed) for p in workload]
    return DemoResult(options=options, parsed=parsed, outcomes=outcomes, samples=driver.samples,
                      quota_checks=driver.quota_checks, http_calls=driver.calls, api_views=views,
                      counters=counter_totals(driver.counter),
                      wall_s=time.monotonic() - started)
