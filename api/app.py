"""`accel serve api`: the hardware-profile API and its web page (issue 7).

`make_app(state, metrics=..., token_reviewer=...)` builds the aiohttp Application; `cli/serve.py`
runs it. Availability comes from `state.view()` (watches, or a snapshot), never from a list call
per request; `/readyz` follows `state.ready()`, which turns false when the watches are older than
`settings.api.maxStalenessSeconds`. Every answer carries `observedAt`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from api import handlers
from api.handlers import CONTEXT, ApiContext
from api.identity import Caller, CallerResolver
from api.openapi import openapi_document
from api.views import ProfileCache, dumps
from kube.protocol import TokenReviewer
from serving.app import make_base_app
from serving.cluster_state import ClusterState
from serving.metrics import Metrics

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
MAX_CONCURRENCY = 256

ROUTES: tuple[str, ...] = (
    "/",
    "/static/{filename}",
    "/api/hardware-profiles",
    "/api/hardware-profiles/draft",
    "/api/hardware-profiles/{name}",
    "/api/nodes",
    "/api/accelerators",
    "/api/estimates",
    "/api/models",
    "/api/whoami",
    "/api/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
)


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    """Files of api/static/ by plain name only (no sub-paths, so nothing outside can be reached)."""
    name = request.match_info["filename"]
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound(reason=f"no static file {name!r}")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


def make_openapi_handler() -> Callable[[web.Request], Awaitable[web.Response]]:
    body = dumps(openapi_document())

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handle


def make_app(
    state: ClusterState,
    *,
    metrics: Metrics,
    token_reviewer: TokenReviewer | None = None,
    clock: Callable[[], float] = time.monotonic,
    dev_identity: tuple[str, ...] | None = None,
) -> web.Application:
    """The API app: routes in ROUTES, probes/metrics/limits from serving.app.

    `clock` (monotonic seconds) times the TokenReview cache; tests pass a manual clock.
    `dev_identity`: groups given to callers who would be anonymous (local snapshot use only;
    `accel serve api --dev-identity` refuses it against a cluster).
    """
    stand_in = Caller(username="dev-identity", groups=dev_identity, anonymous=False) if dev_identity else None
    app = make_base_app(name="api", metrics=metrics, max_body_bytes=MAX_BODY_BYTES,
                        max_concurrency=MAX_CONCURRENCY, ready=state.ready)
    app[CONTEXT] = ApiContext(
        state=state,
        resolver=CallerResolver(token_reviewer, clock=clock, dev_identity=stand_in),
        profiles=ProfileCache(),
    )
    app.router.add_get("/", index)
    app.router.add_get("/static/{filename}", static_file)
    app.router.add_get("/api/hardware-profiles", handlers.list_profiles)
    app.router.add_post("/api/hardware-profiles/draft", handlers.draft)
    app.router.add_get("/api/hardware-profiles/{name}", handlers.get_profile)
    app.router.add_get("/api/nodes", handlers.list_nodes)
    app.router.add_get("/api/accelerators", handlers.list_accelerators)
    app.router.add_post("/api/estimates", handlers.estimates)
    app.router.add_get("/api/models", handlers.list_models)
    app.router.add_get("/api/whoami", handlers.whoami)
    app.router.add_get("/api/usage", handlers.usage)
    app.router.add_get("/api/openapi.json", make_openapi_handler())
    return app
