"""The demo's day, driven through the real endpoints exactly as kube-apiserver and kube-scheduler would.

Per submitted pod: AdmissionReview to `/mutate`, the returned JSON Patch applied (jsonpatch),
`/validate` on the mutated pod, then (if admitted) the pod is created in the in-memory API server.
GPU pods are scheduled like kube-scheduler with an extender (nodeCacheCapable): its own filters
(cli.demo_scheduler), `/filter` with NodeNames, `/prioritize` when 2+ nodes pass, the highest score
(seeded random among ties), `/bind`; the kubelet's part (phase Running, later Succeeded, then
deletion) is written to the API server so every app's watches see it.

Time: a virtual clock in hours moves event by event (arrivals, finishes, give-ups) through a
priority queue; only HTTP uses real time. After every change the driver waits until all three
apps' watches show it, so a run is reproducible from its seed.

Rules:
1. An admitted pod that no node can take stays Pending (it keeps counting against quota, as on a
   cluster) and is retried after every finish; after `patience_h` its owner deletes it (`gave-up`).
2. CPU-only pods are never sent to the extender (its managedResources are GPU names): the default
   scheduler binds them to a feasible node itself.
3. At every admission the team's usage per type and in total is recomputed from the API server's
   pods (bound and pending) and recorded, so tests can check quota was never exceeded.
4. The pods the snapshot shows running finish at seeded times in the first `existing_end_h`
   hours (they are not charged: the demo did not start them).
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch

from accel.demo_summary import ClusterSample, PodOutcome, observe_shape, sample_cluster
from accel.demo_workload import DemoPod, generate_workload, pod_manifest
from accel.fragmentation import WorkloadHistogram
from accel.inventory import Inventory, pod_gpu_equivalents, team_usage
from accel.pods import PROFILE_ANNOTATION, TYPE_ANNOTATION, parse_pod
from accel.policy import ALL_TYPES, ParsedPolicy
from accel.pricing import COST_ANNOTATION
from cli.demo_scheduler import SchedulerCache, feasible_nodes, select_host, unschedulable_message
from cli.demo_servers import Servers
from cli.state import CliError
from kube.informer import ClusterWatcher

SYNC_DEADLINE_S = 10.0


@dataclass(frozen=True)
class DemoOptions:
    pods: int = 500
    seed: int = 7
    policy_dir: Path = Path("examples/policy")
    snapshot: Path = Path("examples/cluster.yaml")
    day_hours: float = 24.0
    patience_h: float = 4.0
    sample_every_h: float = 0.25
    existing_end_h: float = 8.0


@dataclass(frozen=True)
class QuotaCheck:
    """A team's usage right after one of its pods was admitted (rule 3); "*" = all types."""

    t_h: float
    team: str
    pod: str
    usage: dict[str, Fraction]


@dataclass
class Progress:
    total: int
    done: int = 0
    admitted: int = 0
    denied: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Record:
    pod: DemoPod
    admitted: bool = False
    reason: str = ""
    message: str = ""
    profile: str | None = None
    node: str | None = None
    accel_type: str | None = None
    node_type: str | None = None
    gpus: Fraction = Fraction(0)
    cost_per_hour: Decimal | None = None
    started_h: float | None = None
    finished_h: float | None = None
    waiting: str = ""  # why the last scheduling attempt failed
    leaf: str | None = None

    def outcome(self, parsed: ParsedPolicy) -> PodOutcome:
        profile = parsed.policy.profile(self.profile) if self.profile else None
        return PodOutcome(
            name=self.pod.name, team=self.pod.team, kind=self.pod.kind, profile=self.profile,
            admitted=self.admitted, reason=self.reason, message=self.message, node=self.node,
            accel_type=self.accel_type, node_type=self.node_type, profile_types=profile.types if profile else (), gpus=self.gpus,
            cost_per_hour=self.cost_per_hour, started_h=self.started_h, finished_h=self.finished_h,
            waiting=self.waiting if self.node is None else "", job=self.pod.job, leaf=self.leaf,
        )


@dataclass
class DemoResult:
    options: DemoOptions
    parsed: ParsedPolicy
    outcomes: list[PodOutcome]
    samples: list[ClusterSample]
    quota_checks: list[QuotaCheck]
    http_calls: Counter[str]
    api_views: dict[str, list[str]]
    wall_s: float = 0.0

    @property
    def gave_up(self) -> list[PodOutcome]:
        return [o for o in self.outcomes if o.admitted and o.node is None]


class Driver:
    """One simulated day against running servers (see module docstring)."""

    def __init__(self, servers: Servers, session: aiohttp.ClientSession, options: DemoOptions, parsed: ParsedPolicy,
                 watcher: ClusterWatcher, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.servers, self.session, self.options, self.parsed = servers, session, options, parsed
        self.watcher = watcher  # kube-scheduler's informers (its own, like any API client)
        self.cache = SchedulerCache(watcher, parsed)
        self.cluster = servers.cluster
        self.rng = random.Random(options.seed)  # kube-scheduler tie-breaks
        self.uids = random.Random(options.seed + 1)
        self.events: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self.records: dict[str, _Record] = {}
        self.pending: list[str] = []
        self.now_h = 0.0
        self.samples: list[ClusterSample] = []
        self.quota_checks: list[QuotaCheck] = []
        self.calls: Counter[str] = Counter()
        self.histogram = WorkloadHistogram(half_life=math.inf)
        self.progress = Progress(total=options.pods)
        self.on_progress = on_progress

    # --- the event loop -------------------------------------------------------------------
    def _push(self, t_h: float, kind: str, key: str) -> None:
        heapq.heappush(self.events, (t_h, next(self._seq), kind, key))

    async def run(self, workload: list[DemoPod]) -> None:
        for pod in workload:
            self.records[pod.key] = _Record(pod)
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
        """Rule 4: the pods the snapshot shows running end during the first `existing_end_h` hours."""
        for pod in sorted(self.watcher.pods.items(), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
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

    async def _set_phase(self, key: str, phase: str) -> dict[str, Any] | None:
        namespace, name = key.split("/", 1)
        pod = self.cluster.get("pods", name, namespace)
        if pod is None:
            return None
        pod.setdefault("status", {})["phase"] = phase
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
        review = await self._post("webhook", path, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
        response: dict[str, Any] = review["response"]
        if response.get("uid") != request["uid"]:
            raise CliError(f"demo: {path} answered uid {response.get('uid')!r} for request {request['uid']!r}")
        return response

    # --- admission ----------------------------------------------------------------------------
    def _deny(self, record: _Record, response: dict[str, Any]) -> None:
        status = response.get("status") or {}
        audit = response.get("auditAnnotations") or {}
        record.reason = str(audit.get("decision") or status.get("reason") or "denied")
        record.message = str(status.get("message") or "")
        self.progress.denied += 1

    async def _arrive(self, record: _Record) -> None:
        pod = pod_manifest(record.pod)
        user = record.pod.labels.get("user", "someone")
        response = await self._review("/mutate", pod, user)
        if not response.get("allowed"):
            return self._deny(record, response)
        if response.get("patch"):
            ops = jsonpatch.JsonPatch.from_string(base64.b64decode(response["patch"]).decode())
            pod = ops.apply(pod)
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

    async def _check_quota(self, record: _Record) -> None:
        inventory = await self._inventory()
        usage = team_usage(inventory, catalog=self.parsed.catalog, policy=self.parsed.policy).get(record.pod.team, {})
        total = sum(usage.values(), Fraction(0))
        self.quota_checks.append(QuotaCheck(self.now_h, record.pod.team, record.pod.key, {**usage, ALL_TYPES: total}))

    # --- scheduling ---------------------------------------------------------------------------
    async def _retry_pending(self) -> None:
        for key in list(self.pending):
            await self._schedule(key)

    async def _bind_default(self, record: _Record) -> None:
        """Rule 2: the default scheduler's own binder."""
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
            scores = await self._post("extender", "/prioritize", {"Pod": obj, "Nodes": None, "NodeNames": names})
            by_host = {str(h["Host"]): int(h["Score"]) for h in scores or []}
            node = select_host({n: by_host.get(n, 0) for n in names}, self.rng)
        bound = await self._post("extender", "/bind", {"PodName": name, "PodNamespace": namespace,
                                                         "PodUID": obj["metadata"]["uid"], "Node": node})
        if bound.get("Error"):
            record.waiting = f"bind failed: {bound['Error']}"
            return False
        self.pending.remove(key)
        record.waiting = ""
        await self._started(record, node)
        return True

    async def _started(self, record: _Record, node: str) -> None:
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
        record.gpus = pod_gpu_equivalents(view, inventory, self.parsed.catalog, self.parsed.policy) if view.wants_accelerators else Fraction(0)
        record.cost_per_hour = _decimal(annotations.get(COST_ANNOTATION))
        if node_inv is not None and view.wants_accelerators:
            observe_shape(self.histogram, node_inv, view)
        self._push(self.now_h + record.pod.duration_h, "finish", record.pod.key)

    async def _sample(self, t_h: float) -> ClusterSample:
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
                    raise CliError(f"demo: GET /api/hardware-profiles answered HTTP {resp.status}: {(await resp.text())[:300]}")
                body = await resp.json()
            views[team.name] = [_profile_name(item) for item in body.get("profiles", [])]
        return views


def _extender_message(reply: dict[str, Any], offered: int) -> str:
    """The extender's filter answer as one line: its error, or its most common node reason."""
    if reply.get("Error"):
        return f"extender error: {reply['Error']}"
    reasons = Counter({**(reply.get("FailedNodes") or {}), **(reply.get("FailedAndUnresolvableNodes") or {})}.values())
    common = ", ".join(f"{n} {why}" for why, n in reasons.most_common(2))
    return f"extender filtered all {offered} candidate node(s): {common or 'no reason given'}"


def _profile_name(item: dict[str, Any]) -> str:
    """An item of the hardware-profiles list (ODH shape: metadata.name; flat: name)."""
    return str((item.get("metadata") or {}).get("name") or item.get("name") or "?")


def _decimal(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


async def run_day(servers: Servers, options: DemoOptions, *, on_progress: Callable[[Progress], None] | None = None) -> DemoResult:
    """Generate the workload from the seed and drive it through `servers`."""
    parsed = servers.states["webhook"].view().parsed
    workload = generate_workload(seed=options.seed, count=options.pods, day_hours=options.day_hours)
    started = time.monotonic()
    watcher = ClusterWatcher(servers.cluster)
    watching = asyncio.create_task(watcher.run(), name="demo-scheduler-informers")
    try:
        await watcher.wait_synced()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=servers.client_ssl, limit=8)) as session:
            driver = Driver(servers, session, options, parsed, watcher, on_progress)
            await driver.run(workload)
            views = await driver.team_views()
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    outcomes = [driver.records[p.key].outcome(parsed) for p in workload]
    return DemoResult(options=options, parsed=parsed, outcomes=outcomes, samples=driver.samples,
                      quota_checks=driver.quota_checks, http_calls=driver.calls, api_views=views,
                      wall_s=time.monotonic() - started)
