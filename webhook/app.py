"""The admission webhook app: `POST /mutate`, `POST /validate` (+ /healthz, /readyz, /metrics).

Served only over HTTPS by `serving.run` (the app is named "webhook", which refuses plaintext).
Handlers are thin: read the JSON body (serving.body: size/depth limits, 400 on garbage), answer a
pod that asks for no accelerator straight from the raw JSON (`Admitter.answer_plain`: most pods,
no models built), else parse the AdmissionReview (400 naming the bad field), ask the `Admitter`,
render with `Admitter.respond` (`build_response`, the answer of a remembered mutation rendered once).
A malformed review is a 400 with a reason, never a 5xx or a traceback.

Without a `ledger_store` (single replica, local runs) quota is checked against the watch only,
with no reservation for admissions in flight; production wiring always passes one, and a
`pod_source` (the API server) for the reconciler that frees reservations whose pod never
appeared (webhook/reconcile.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import orjson
from aiohttp import web

from kube.protocol import CasStore, ObjectSource
from serving.app import make_base_app
from serving.body import read_json
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from serving.peers import require_client_cert
from webhook.admitter import Admitter, StateSource
from webhook.reconcile import Reconciler
from webhook.review import build_response, parse_review

ROUTES: tuple[str, ...] = ("/mutate", "/validate", "/validate-update", "/healthz", "/readyz", "/metrics")
ADMITTER = web.AppKey("accel_admitter", Admitter)
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server caps objects at ~1.5 MiB; a review holds one pod
MAX_CONCURRENCY = 256


def _json(payload: object) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def _admit(request: web.Request, *, mutating: bool) -> web.Response:
    """One AdmissionReview in, its answer out: pods asking for no accelerator on the raw-JSON
    fast path, everything else through the admitter's full mutate or validate path."""
    admitter = request.app[ADMITTER]
    admitter.in_flight += 1  # with others in flight, a new state generation is built in steps
    try:
        body = await read_json(request)
        if (plain := admitter.answer_plain(body, mutating=mutating)) is not None:
            return _json(plain)
        admission = parse_review(body).request
        del body
        uid, decide = admission.uid, admitter.mutate if mutating else admitter.validate
        # No reference to the review while the answer awaits the quota ledger: Admitter.validate drops
        # the pod once it is planned, so its JSON tree is freed then, not carried through the await
        # into older garbage-collector generations (16 such trees in flight made a collection every
        # few requests).
        pending = decide(admission)
        del admission
        decision = await pending
        return _json(admitter.respond(uid, decision, mutating=mutating))
    finally:
        admitter.in_flight -= 1


async def handle_mutate(request: web.Request) -> web.Response:
    return await _admit(request, mutating=True)


async def handle_validate(request: web.Request) -> web.Response:
    return await _admit(request, mutating=False)


async def handle_validate_update(request: web.Request) -> web.Response:
    """Pod UPDATE (accel.admission.update): refuse changes to the keys accel froze at admission."""
    review = parse_review(await read_json(request))
    decision = await request.app[ADMITTER].review_update(review.request)
    return _json(build_response(review.request.uid, decision, mutating=False))


def make_app(
    state: StateSource,
    *,
    metrics: Metrics,
    ledger_store: CasStore | None = None,
    pod_source: ObjectSource | None = None,
    clock: Callable[[], float] = time.time,
    replica_id: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
    max_concurrency: int = MAX_CONCURRENCY,
    client_names: Iterable[str] | None = None,
    annotation_writers: Iterable[str] = (),
) -> web.Application:
    """The webhook Application for one replica; `state` is a `serving.cluster_state.ClusterState`.

    `client_names` (opt-in): /mutate and /validate then answer only a verified client certificate
    with one of these CNs, the API server's when its AdmissionConfiguration presents one
    (serving/peers.py: 401 without, 403 for another name; probes and /metrics stay open)."""
    names = tuple(client_names) if client_names is not None else None
    app = make_base_app(
        name="webhook",
        metrics=metrics,
        max_body_bytes=max_body_bytes,
        max_concurrency=max_concurrency,
        ready=state.ready,
        authenticate=require_client_cert(names, app="webhook", metrics=metrics)
        if names is not None
        else None,
    )
    ledger = LedgerClient(ledger_store, metrics=metrics) if ledger_store is not None else None
    admitter = app[ADMITTER] = Admitter(
        state, metrics=metrics, ledger=ledger, clock=clock, replica_id=replica_id,
        annotation_writers=tuple(annotation_writers),
    )
    if ledger is not None and pod_source is not None:
        reconciler = Reconciler(admitter, pod_source)

        async def tidy(_app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(reconciler.run(), name="quota-reconciler")
            yield
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        app.cleanup_ctx.append(tidy)
    app.router.add_post("/mutate", handle_mutate)
    app.router.add_post("/validate", handle_validate)
    app.router.add_post("/validate-update", handle_validate_update)
    return app
