"""Shared aiohttp plumbing for the webhook, the extender and the API.

`make_base_app(...)` returns an Application with `/healthz`, `/readyz`, `/metrics` and this
middleware chain (outermost first):
1. observe: inflight gauge, then in `finally` exactly one requests_total/duration sample per request,
   labelled by route (never by raw path, so cardinality stays bounded).
2. errors: `BadRequest` -> 400/413 `{"error": reason}`; aiohttp HTTP errors -> same status as JSON;
   any other exception -> 500 `{"error": "internal error", "request_id": ...}` with the traceback only
   in the log. A client never sees a stack trace.
2a. authenticate (optional, e.g. serving.peers.require_client_cert): refuses a caller before any
   slot is taken or any body is read.
3. limits: a declared Content-Length over `max_body_bytes` -> 413 before reading; at most
   `max_concurrency` handlers run at once, a request waits at most `queue_timeout` for a slot and
   then gets 503 + Retry-After (back-pressure instead of an unbounded pile-up). Probes and /metrics
   bypass the limit so an overloaded pod still reports itself.

Handlers added by each server read their body with `serving.body.read_json`.

/metrics carries what Prometheus alone should read (per-team quota use, GPU-hours and cost), so a
server may publish it on a separate plain-HTTP listener instead (`make_metrics_app`, served by
serving.run when given `metrics_port`, `accel serve --metrics-port`): the app then has
`METRICS_ELSEWHERE` set and its own /metrics answers 404, so the serving port, which users and
peers reach, carries none of it and a NetworkPolicy can admit only Prometheus to the other one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from serving.body import BadRequest
from serving.metrics import REJECT_BODY_TOO_LARGE, REJECT_OVERLOADED, Metrics, metrics_handler

log = logging.getLogger(__name__)

class InFlight:
    """Requests inside the handler chain right now; `serve` waits for zero before closing connections.

    aiohttp's own shutdown stops reading from every connection first, so a request whose body is
    still arriving when SIGTERM lands would hang until the shutdown timeout; draining on this
    count (with the listener already closed) lets such requests finish.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


APP_NAME = web.AppKey("accel_app_name", str)
METRICS = web.AppKey("accel_metrics", Metrics)
INFLIGHT = web.AppKey("accel_inflight", InFlight)
METRICS_ELSEWHERE = web.AppKey("accel_metrics_elsewhere", bool)  # /metrics is on the metrics listener
UNLIMITED_PATHS: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_SECONDS = 1

ReadyFn = Callable[[], tuple[bool, str]]


def json_error(status: int, message: str, **extra: str) -> web.Response:
    """A JSON error answer: `{"error": message, ...extra}`."""
    return web.json_response({"error": message, **extra}, status=status)


def _handler_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def _observe_middleware(name: str, metrics: Metrics, tracker: InFlight) -> Middleware:
    inflight = metrics.http_inflight.labels(app=name)
    # Label children per (route label, status code), looked up once: `labels()` takes a lock and
    # builds the label tuple on every call, which costs more than the sample itself. Bounded: route
    # labels are the app's routes (or "unmatched") and codes are HTTP statuses.
    children: dict[tuple[str, int], tuple[Any, Any]] = {}

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        code = 500
        inflight.inc()
        tracker.enter()
        try:
            response = await handler(request)
            code = response.status
            return response
        finally:
            inflight.dec()
            tracker.leave()
            label = _handler_label(request)
            pair = children.get((label, code))
            if pair is None:
                pair = children[(label, code)] = (
                    metrics.http_requests.labels(app=name, handler=label, code=str(code)),
                    metrics.http_duration.labels(app=name, handler=label),
                )
            pair[0].inc()
            pair[1].observe(time.perf_counter() - started)

    return observe


def _error_middleware(name: str, metrics: Metrics) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            metrics.http_rejected.labels(app=name, reason=exc.reject_reason).inc()
            return json_error(exc.status, exc.reason)
        except web.HTTPRequestEntityTooLarge:
            metrics.http_rejected.labels(app=name, reason=REJECT_BODY_TOO_LARGE).inc()
            return json_error(413, f"body larger than {request.client_max_size} bytes")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return json_error(exc.status, exc.reason)
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            request_id = uuid.uuid4().hex[:16]
            log.exception(
                "unhandled error", extra={"request_id": request_id, "app": name, "path": request.path}
            )
            return json_error(500, "internal error", request_id=request_id)

    return errors


def _limit_middleware(
    name: str, metrics: Metrics, *, max_body_bytes: int, max_concurrency: int, queue_timeout: float
) -> Middleware:
    slots = asyncio.Semaphore(max_concurrency)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        if request.content_length is not None and request.content_length > max_body_bytes:
            metrics.http_rejected.labels(app=name, reason=REJECT_BODY_TOO_LARGE).inc()
            return json_error(
                413, f"body of {request.content_length} bytes is over the {max_body_bytes}-byte limit"
            )
        try:
            if slots.locked():  # only a request that must queue pays for wait_for's task and timer
                await asyncio.wait_for(slots.acquire(), timeout=queue_timeout)
            else:
                await slots.acquire()  # a free slot is taken at once, without yielding
        except TimeoutError:
            metrics.http_rejected.labels(app=name, reason=REJECT_OVERLOADED).inc()
            response = json_error(503, "overloaded: too many concurrent requests, retry shortly")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        try:
            return await handler(request)
        finally:
            slots.release()

    return limits


def make_base_app(
    *,
    name: str,
    metrics: Metrics,
    max_body_bytes: int,
    max_concurrency: int,
    ready: ReadyFn,
    queue_timeout: float = 0.25,
    authenticate: Middleware | None = None,
) -> web.Application:
    """An Application with probes, /metrics, limits, JSON errors and per-request metrics.

    `ready()` returns (ok, reason); /readyz answers 200 or 503 with that reason. The app's name is
    the `app` label of every shared metric. Servers add their own routes to the returned app.
    """
    if max_body_bytes <= 0 or max_concurrency <= 0:
        raise ValueError("max_body_bytes and max_concurrency must be positive")
    tracker = InFlight()
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[
            _observe_middleware(name, metrics, tracker),
            _error_middleware(name, metrics),
            *([authenticate] if authenticate is not None else []),
            _limit_middleware(
                name,
                metrics,
                max_body_bytes=max_body_bytes,
                max_concurrency=max_concurrency,
                queue_timeout=queue_timeout,
            ),
        ],
    )
    app[APP_NAME] = name
    app[METRICS] = metrics
    app[INFLIGHT] = tracker

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ok, reason = ready()
        return web.json_response({"ready": ok, "reason": reason}, status=200 if ok else 503)

    exposition = metrics_handler(metrics)

    async def metrics_here(request: web.Request) -> web.Response:
        if request.app.get(METRICS_ELSEWHERE, False):
            return json_error(404, "not found: this server's metrics are on its separate metrics port")
        return await exposition(request)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_here)
    return app


def make_metrics_app(metrics: Metrics) -> web.Application:
    """The metrics listener's app: GET /metrics (Prometheus text format) and nothing else (every
    other path 404). No request body is read, so no limits beyond aiohttp's own apply."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    return app


__all__ = [
    "APP_NAME", "INFLIGHT", "METRICS", "METRICS_ELSEWHERE", "InFlight", "json_error", "make_base_app",
    "make_metrics_app",
]

