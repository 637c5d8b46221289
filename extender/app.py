"""The scheduler extender app: POST /filter, /prioritize, /bind, /preempt (nodeCacheCapable first).

Handlers are adapters: parse (400 on malformed args; `raw_args.ArgsReader`, which answers as
`wire.parse_args_json` but decodes a node list it has seen before only once, and parses the
pod of a filter+prioritize pair once), call `accel.placement.core.ExtenderCore`, render (both big
replies are joined from per-node fragments: `filter_reply.FilterRenderer`, `wire.PriorityRenderer`).
Decisions that cannot be made (state not ready, internal failure, bind conflict) answer HTTP 200
with `Error` set, which kube-scheduler treats as a failed attempt and retries (protocols.md 1.3,
1.7). Preempt has no `Error` field: malformed args answer 400; otherwise the reply is always 200
with the candidates where evicting the proposed victims really makes the pod fit
(accel.placement.preempt), and an empty map when the state is not ready or the decision failed
(no eviction on a guess: evictions are not undone by a retry, a skipped preemption is).
`accel_extender_requests_total{verb,result}` is recorded once per
request in `finally`; `accel_extender_bind_total{result}` once per bind.

Callers: with `client_names` every verb needs a verified client certificate whose CN is one of
them (kube-scheduler's `accel-scheduler`; serving/peers.py): 401 without one, 403 for another
name, before the body is read. Probes and /metrics stay open (/metrics answers 404 when the
server has a metrics port, serving.run). `accel serve extender` always passes it unless told
`--allow-unauthenticated`.

Bind sequence: plan (devices + annotations, type and price of the node's real type, always
overwriting what the pod carried) -> per-type quota conversion on the ledger for a pod whose type
is fixed only now (extender/quota_gate.py; a full quota or a lost race is an `Error` the scheduler
retries) -> assume (so a filter running while the Binding is in flight already sees the devices
taken) -> `Binder.bind` -> on failure forget the assumption and undo the conversion; on success
record the job's leaf hold (accel.placement.state rule 3) and an `AcceleratorPlaced` Event
(reporting controller `accel-extender`) carrying the explanation the bind also wrote to the
pod's `accel.dev/placement` annotation.
With a quota gate, /filter also fails the nodes of types whose team quota is full for the pod.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from accel.capacity.inventory import Inventory
from accel.cluster.pods import PodView, parse_pod
from accel.placement.bind import BindRefused
from accel.placement.core import ExtenderCore
from accel.placement.index import ClusterIndex
from accel.placement.score import PLACED_CONTROLLER, PLACED_REASON
from accel.placement.state import JobQuota
from accel.policy.kueue import kueue_scope, pod_is_queued
from accel.policy.models import Profile
from accel.quota.chargeback import priced_profile
from accel.quota.charges import ChargeMemo
from extender.filter_reply import FilterRenderer
from extender.priority_reply import PriorityRenderer
from extender.quota_gate import QuotaGate
from extender.raw_args import ArgsReader, ReadArgs
from extender.wire import (
    parse_binding,
    parse_preemption,
    render_binding,
    render_filter,
    render_preemption,
)
from kube.errors import Conflict, KubeError, NotFound
from kube.protocol import Binder, CasStore, EventRecorder
from serving.app import make_base_app
from serving.body import read_body, read_json
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from serving.peers import require_client_cert

log = logging.getLogger(__name__)

ROUTES: tuple[str, ...] = ("/filter", "/prioritize", "/bind", "/preempt", "/healthz", "/readyz", "/metrics")
MAX_BODY_BYTES = 64 * 1024 * 1024  # full-Node mode at 5000 nodes is tens of MB
MAX_CONCURRENCY = 64
JSON = "application/json"


class NotReady(Exception):
    """The cluster state cannot answer yet (no policy, watches not synced)."""


@dataclass
class Extender:
    """State shared by the handlers of one app."""

    state: ClusterState
    metrics: Metrics
    binder: Binder | None
    clock: Callable[[], float]
    core: ExtenderCore | None = None
    events: EventRecorder | None = None  # AcceleratorPlaced after every bind (best effort)
    gate: QuotaGate | None = None
    renderer: PriorityRenderer = field(default_factory=PriorityRenderer)
    reader: ArgsReader = field(default_factory=ArgsReader)
    filter_renderer: FilterRenderer = field(default_factory=FilterRenderer)
    charges: ChargeMemo = field(default_factory=ChargeMemo)  # team usage for job-hold caps (_job_quota)
    _usage: tuple[Inventory, Mapping[str, Mapping[str, Fraction]]] | None = None  # of the last inventory
    requests: Counter = field(init=False)
    binds: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.requests = self.metrics.counter(
            "accel_extender_requests_total",
            "Extender calls by verb and result (ok, error).",
            ("verb", "result"),
        )
        self.binds = self.metrics.counter(
            "accel_extender_bind_total",
            "Extender binds by result (ok, refused, conflict, not_found, error).",
            ("result",),
        )

    def index(self) -> tuple[ExtenderCore, ClusterIndex, float]:
        ok, reason = self.state.ready()
        if not ok:
            raise NotReady(f"accel: extender not ready: {reason}")
        view = self.state.view()
        scoring = view.parsed.policy.settings.scoring
        if self.core is None:
            self.core = ExtenderCore(half_life=scoring.workload_half_life)
        index = self.core.index(view.generation, view.parsed.policy, view.inventory, view.parsed.catalog)
        return self.core, index, scoring.assume_ttl_seconds

    def count(self, verb: str, result: str) -> None:
        self.requests.labels(verb=verb, result=result).inc()

    def team_usage(self, view: Any) -> Mapping[str, Mapping[str, Fraction]]:
        """Every team's usage per type in `view` (bound and pending pods), once per inventory."""
        if self._usage is None or self._usage[0] is not view.inventory:
            self._usage = (view.inventory, self.charges.usage(view.parsed, view.inventory))
        return self._usage[1]


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=JSON)


async def _read_args(ext: Extender, request: web.Request) -> ReadArgs:
    """serving.body.read_json's content-type and size rules, then `ArgsReader.read`
    (wire.parse_args_json's answers, remembered node lists decoded once)."""
    return ext.reader.read(await read_body(request))


def _internal(verb: str, exc: Exception) -> str:
    request_id = uuid.uuid4().hex[:16]
    log.error("extender %s failed", verb, exc_info=exc, extra={"request_id": request_id})
    return f"accel: internal error in {verb} (request_id {request_id}); see extender logs"


async def _filter(ext: Extender, request: web.Request) -> web.Response:
    result = "error"
    try:
        read = await _read_args(ext, request)
        args = read.args
        try:
            core, index, _ = ext.index()
            req = core.request(ext.reader.pod(read), index, ext.clock())
            if ext.gate is not None:
                req = await ext.gate.narrow(ext.state.view(), req)
            cols = core.filter_columns(index, req, args.names, read.names_key)
            required = core.required_topology(index, req, cols)  # Kueue required topology: per node
            fast = (
                ext.filter_renderer.render(cols) if args.node_names is not None and required is None else None
            )
            if fast is None:
                body = render_filter(args, required if required is not None else core.outcome(index, cols))
            else:
                body = fast.body
        except NotReady as exc:
            return _json(render_filter(args, None, str(exc)))
        except Exception as exc:  # a failed decision is an Error reply, never a passed node
            return _json(render_filter(args, None, _internal("filter", exc)))
        if fast is not None and (passed := fast.passed) is not None:  # prioritize likely gets exactly these
            index.remember(passed.key, passed.positions)
            ext.reader.learn(passed.key, passed.names)
        result = "ok"
        return _json(body)
    finally:
        ext.count("filter", result)


async def _prioritize(ext: Extender, request: web.Request) -> web.Response:
    result = "error"
    try:
        read = await _read_args(ext, request)
        try:
            core, index, _ = ext.index()
        except NotReady as exc:
            raise web.HTTPServiceUnavailable(reason=str(exc)) from None
        req = core.request(ext.reader.pod(read), index, ext.clock())
        body = ext.renderer.render(core.scores(index, req, read.args.names, read.names_key))
        result = "ok"
        return _json(body)
    finally:
        ext.count("prioritize", result)


async def _bind(ext: Extender, request: web.Request) -> web.Response:
    result, outcome = "error", "error"
    try:
        args = parse_binding(await read_json(request))
        try:
            error, outcome = await _do_bind(ext, args.pod_namespace, args.pod_name, args.pod_uid, args.node)
        except Exception as exc:
            error = _internal("bind", exc)
        result = "ok" if not error else "error"
        return _json(render_binding(error))
    finally:
        ext.count("bind", result)
        ext.binds.labels(result=outcome).inc()


def _team_of(inventory: Inventory, label: str, namespace: str) -> str | None:
    return inventory.team_of(namespace, label)


async def _preempt(ext: Extender, request: web.Request) -> web.Response:
    result = "error"
    try:
        args = parse_preemption(await read_json(request))
        candidates = args.meta_victims()
        try:
            core, index, _ = ext.index()
            req = core.request(parse_pod(args.pod), index, ext.clock())
            uids = {node: [p.uid for p in v.pods] for node, v in candidates.items()}
            view = ext.state.view()
            label = view.parsed.policy.settings.team_label
            team_of = functools.partial(_team_of, view.inventory, label)
            kept = {node: candidates[node] for node in core.preempt(index, req, uids, team_of)}
        except NotReady as exc:
            log.warning("extender preempt skipped: %s", exc)
            return _json(render_preemption({}))
        except Exception as exc:  # no eviction on a failed decision (module docstring)
            _internal("preempt", exc)
            return _json(render_preemption({}))
        result = "ok"
        return _json(render_preemption(kept))
    finally:
        ext.count("preempt", result)


def _price_profile(view: Any, pod: PodView, accel_type: str) -> Profile | None:
    """The profile a bind prices the pod under: never one its author re-annotated after admission
    to pay less (accel.quota.chargeback rule 5)."""
    policy, inventory = view.parsed.policy, view.inventory
    team = inventory.team_of(pod.namespace, policy.settings.team_label) or ""
    return priced_profile(pod, accel_type, team, policy, inventory, view.parsed.catalog)


def _job_quota(ext: Extender, view: Any, pod: PodView) -> JobQuota:
    """The pod's team quota as the watch shows it, capping the leaf hold for its job: a job size
    is the author's word (accel.placement.state rule 3)."""
    policy, inventory = view.parsed.policy, view.inventory
    name = inventory.team_of(pod.namespace, policy.settings.team_label)
    team = policy.team(name) if name else None
    if team is None:
        return JobQuota(None, {}, "", Fraction(0))
    charged, amount = ext.charges.charge(pod, inventory, view.parsed)
    queued = pod_is_queued(pod, kueue_scope(policy), team.name)
    return JobQuota(team, ext.team_usage(view).get(team.name, {}), charged, amount, queued)


async def _do_bind(ext: Extender, namespace: str, name: str, uid: str, node: str) -> tuple[str, str]:
    """(error text or "", bind metric result)."""
    if ext.binder is None:
        return (
            "accel: this extender runs without a Binder (read-only); configure bindVerb only with one",
            "error",
        )
    try:
        core, index, ttl = ext.index()
        view = ext.state.view()
        plan = core.begin_bind(
            index, namespace=namespace, name=name, uid=uid, node=node, now=ext.clock(), ttl=ttl,
            catalog=view.parsed.catalog, price_profile=partial(_price_profile, view),
            job_quota=partial(_job_quota, ext, view),
        )
    except (NotReady, BindRefused) as exc:
        return str(exc), "refused"
    converted: str | None = None
    if ext.gate is not None:  # per-type quota: the type is fixed now (extender/quota_gate.py)
        try:
            converted, error = await ext.gate.convert(ext.state.view(), plan.pod, node)
        except BaseException:
            core.abort_bind(uid)
            raise
        if error:
            core.abort_bind(uid)
            return error, "refused"
    try:
        await ext.binder.bind(namespace, name, uid, node, plan.annotations)
    except BaseException as exc:
        core.abort_bind(uid)
        if converted is not None and ext.gate is not None:
            await ext.gate.undo(converted)
        if isinstance(exc, (Conflict, NotFound)):
            kind = "conflict" if isinstance(exc, Conflict) else "not_found"
            return f"accel: binding {namespace}/{name} to {node} failed ({kind}): {exc}", kind
        if isinstance(exc, KubeError):
            return f"accel: binding {namespace}/{name} to {node} failed: {exc}", "error"
        raise
    core.finish_bind(plan)
    if ext.events is not None and plan.explanation is not None:
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name, "uid": uid}
        await ext.events.record(
            involved, PLACED_REASON, plan.explanation.message(), component=PLACED_CONTROLLER
        )
    return "", "ok"


EXTENDER = web.AppKey("accel_extender", Extender)


def warm_up(app: web.Application) -> bool:
    """Build the extender's index now, so the first filter does not pay for it: True if built,
    False when `app` is not the extender or its state is not ready yet."""
    ext = app.get(EXTENDER)
    if ext is None:
        return False
    try:
        ext.index()
    except NotReady:
        return False
    return True


def make_app(
    state: ClusterState,
    *,
    metrics: Metrics,
    binder: Binder | None = None,
    clock: Callable[[], float] = time.monotonic,
    core: ExtenderCore | None = None,
    events: EventRecorder | None = None,
    ledger_store: CasStore | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_concurrency: int = MAX_CONCURRENCY,
    client_names: Iterable[str] | None = None,
) -> web.Application:
    """The extender Application (routes in ROUTES). `clock` drives assumption and job-hold expiry;
    `events` gets an `AcceleratorPlaced` Event for every pod bound; `client_names` (module
    docstring) are the client-certificate CNs allowed to call the verbs. With a `ledger_store`
    (production wiring) per-type quota is enforced at filter and bind (extender/quota_gate.py)."""
    names = tuple(client_names) if client_names is not None else None
    app = make_base_app(
        name="extender",
        metrics=metrics,
        max_body_bytes=max_body_bytes,
        max_concurrency=max_concurrency,
        ready=state.ready,
        authenticate=require_client_cert(names, app="extender", metrics=metrics)
        if names is not None
        else None,
    )
    gate = QuotaGate(LedgerClient(ledger_store, metrics=metrics)) if ledger_store is not None else None
    ext = Extender(
        state=state, metrics=metrics, binder=binder, clock=clock, core=core, events=events, gate=gate
    )
    app[EXTENDER] = ext
    if gate is not None:
        registered_gate = gate

        async def keep_registered(_app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(registered_gate.keep_registered(state), name="ledger-registration")
            yield
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        app.cleanup_ctx.append(keep_registered)

    async def filter_route(request: web.Request) -> web.Response:
        return await _filter(ext, request)

    async def prioritize_route(request: web.Request) -> web.Response:
        return await _prioritize(ext, request)

    async def bind_route(request: web.Request) -> web.Response:
        return await _bind(ext, request)

    app.router.add_post("/filter", filter_route)
    app.router.add_post("/prioritize", prioritize_route)
    async def preempt_route(request: web.Request) -> web.Response:
        return await _preempt(ext, request)

    app.router.add_post("/bind", bind_route)
    app.router.add_post("/preempt", preempt_route)
    return app
