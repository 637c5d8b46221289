"""Who is on the other end of a connection: the verified client certificate, or loopback.

The servers' TLS contexts ask for a client certificate but do not require one (`CERT_OPTIONAL`,
see serving/tls.py), so probes and Prometheus still connect without one. A certificate that is
sent must chain to the configured client CA and carry the clientAuth purpose, or the handshake
fails; so a peer certificate seen here was verified by OpenSSL. What it may do is then decided
per route:

1. `require_client_cert(names)` (the extender): every path except the probes and /metrics needs
   a verified client certificate whose subject CN is one of `names` (kube-scheduler's is
   `accel-scheduler`, issued by `accel certs`). None -> 401; another CN -> 403. Both answer
   before the body is read, so an unauthenticated /bind binds nothing.
2. `peer_common_name(request)` / `is_loopback(request)`: the API asks these before it trusts a
   proxy's group header (api/identity.py).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from serving.metrics import REJECT_FORBIDDEN, REJECT_UNAUTHENTICATED, Metrics

log = logging.getLogger(__name__)

PROBE_PATHS: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"})


def peer_common_name(request: web.Request) -> str | None:
    """The subject CN of the client certificate this connection verified, or None without one."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:  # no TLS, or TLS without a client certificate
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def is_loopback(request: web.Request) -> bool:
    """True when the peer connected from 127.0.0.0/8 or ::1 (a sidecar in the same pod)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not peer:
        return False
    try:
        return ipaddress.ip_address(str(peer[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def require_client_cert(
    names: Iterable[str], *, app: str, metrics: Metrics, exempt: frozenset[str] = PROBE_PATHS,
    who: str = "kube-scheduler",
) -> Middleware:
    """Middleware for rule 1: only callers holding a client certificate with CN in `names` (`who`:
    the caller in words, for the 401 message)."""
    allowed = frozenset(names)
    if not allowed:
        raise ValueError("require_client_cert needs at least one allowed client name")
    wanted = ", ".join(sorted(allowed))

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        name = peer_common_name(request)
        if name is None:
            metrics.http_rejected.labels(app=app, reason=REJECT_UNAUTHENTICATED).inc()
            return web.json_response(
                {"error": f"client certificate required: {request.path} answers only {who} "
                          f"(mTLS with a certificate for {wanted} from `accel certs client`)"},
                status=401,
                headers={"WWW-Authenticate": "Mutual"},
            )
        if name not in allowed:
            metrics.http_rejected.labels(app=app, reason=REJECT_FORBIDDEN).inc()
            log.warning(
                "refused a client certificate", extra={"app": app, "client": name, "path": request.path}
            )
            return web.json_response(
                {"error": f"client certificate {name!r} may not call {request.path}; allowed: {wanted}"},
                status=403,
            )
        return await handler(request)

    return authenticate
