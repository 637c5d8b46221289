"""Many pod creates at once, as controllers and users do, with each outcome classified."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError


@dataclass(frozen=True)
class Outcome:
    kind: str  # "admitted" | "quota" (denied for quota) | "error" (anything else)
    detail: str
    seconds: float


def _classify(ok: bool, message: str) -> str:
    if ok:
        return "admitted"
    return "quota" if "quota" in message.lower() and "denied the request" in message else "error"


def create_one(e2e: cluster.E2ECluster, pod: cluster.Obj) -> Outcome:
    """Through the admin HTTPS client in local mode (50 kubectl processes would swamp 2 cores),
    through kubectl elsewhere; the API server and webhooks see the same request either way."""
    started = time.monotonic()
    namespace = pod["metadata"]["namespace"]
    if e2e.control_plane is not None:
        try:
            status, body = e2e.control_plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        except OSError as exc:  # the API server is down (the restart case): an error, not a crash
            return Outcome("error", f"API server unreachable: {exc}", time.monotonic() - started)
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        ok = status == 201
    else:
        try:
            e2e.kubectl.create(pod)
            ok, message = True, ""
        except KubectlError as exc:
            ok, message = False, exc.stderr
    return Outcome(_classify(ok, message), message.strip()[:300], time.monotonic() - started)


def burst(e2e: cluster.E2ECluster, pods: list[cluster.Obj], *, workers: int) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pod: create_one(e2e, pod), pods))
