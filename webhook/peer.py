"""The webhook replicas' peer listener: the ledger leader decides the others' quota steps.

While another replica holds the ledger leader Lease (serving/ledger_leader.py), a replica sends the
quota step of its admissions to the leader instead of writing the ledger itself, so one process
writes and no compare-and-swap race is lost between replicas:

1. What is sent is only the quota request (`QuotaRequest`: the reservation with the pod's uid,
   team name, commit flag, candidate types), never the pod. `POST /ledger/decide`, body
   `{"requests": [...], "writer": {"name", "watermark"}}`, one call per batch (the decisions that
   queue while a call is in flight go in the next); the leader's write registers the forwarding
   replica's watch watermark (ledger rule 5) as that replica's own write would, so it needs no
   registration writes of its own while it forwards. The leader looks the team up in ITS policy
   and decides each request with ITS current snapshot (usage, visible pods, watch watermark)
   inside its own group commit: exactly as safe as if it had admitted the pod itself
   (accel/quota/rules.py invariants). Answer
   `{"results": [...]}`: per request the outcome (excess lines and usage, for the denial message),
   or `{"local": reason}` (the team is unknown here, the ledger refused: decide it yourself).
2. A replica whose call fails, answers badly or takes over FORWARD_TIMEOUT_S decides locally with
   its own CAS write of the same reservation id (`with_reservation` overwrites the id, and a
   decision excludes its own id), so a paused or dead leader costs time, never exactness; it then
   decides locally for SUSPECT_S before calling that leader again (one timeout, not one per batch,
   until the Lease expires and a replica that answers takes it).
3. Authenticated: the listener (its own port, `accel serve --peer-port`: two processes sharing the
   serving port with SO_REUSEPORT still each have their own) answers only a verified client
   certificate with CN `accel-webhook` (PEER_CLIENT_NAME, from `accel certs client` or the
   `accel-webhook-peer` Secret): none -> 401, another CN -> 403, a malformed body -> 400 with the
   reason. Anyone else who reaches the port can neither reserve nor free quota.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from accel.admission.messages import Finding
from accel.admission.validate import QuotaRequest, decide_quota
from accel.quota.ledger import Reservation
from accel.quota.rules import QuotaExcess, ReservationOutcome
from kube.protocol import LeaseStore
from serving.app import METRICS_ELSEWHERE, make_base_app
from serving.body import BadRequest, read_json
from serving.ledger import Result
from serving.ledger_leader import LEASE_S, LedgerLeadership
from serving.metrics import Metrics
from serving.peers import require_client_cert
from serving.run import CannotListen
from serving.tls import Fingerprint, ReloadingTLS, files_fingerprint
from webhook.admitter import Admitter

log = logging.getLogger(__name__)

PEER_PATH = "/ledger/decide"
PEER_CLIENT_NAME = "accel-webhook"
FORWARD_TIMEOUT_S = 1.0  # well inside the API server's webhook timeout (10 s by default)
SUSPECT_S = 2.0  # after a failed call, decide locally this long before trying that leader again
MAX_REQUESTS = 1024  # per call: far more than one batch ever holds
MAX_PEER_BODY = 4 * 1024 * 1024


# ---- the request and the answer on the wire ---------------------------------------------------


def encode_request(request: QuotaRequest) -> dict[str, Any]:
    """The quota step as the leader needs it: no pod, no policy (the leader uses its own)."""
    reservation = request.reservation
    return {
        "id": reservation.id,
        "team": request.team.name,
        "commit": request.commit,
        "reservation": reservation.to_json(),
        "candidates": None
        if request.candidates is None
        else {key: str(amount) for key, amount in request.candidates.items()},
    }


def decode_request(item: object, index: int) -> tuple[str, Reservation, bool, dict[str, Fraction] | None]:
    """(team name, reservation, commit, candidates) of one request; BadRequest naming the field."""
    where = f"requests[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: expected an object")
    rid, team, commit, data = item.get("id"), item.get("team"), item.get("commit"), item.get("reservation")
    if not isinstance(rid, str) or not rid:
        raise BadRequest(f"{where}.id: expected the reservation id (the pod's uid)")
    if not isinstance(team, str) or not team:
        raise BadRequest(f"{where}.team: expected a team name")
    if not isinstance(commit, bool):
        raise BadRequest(f"{where}.commit: expected true or false")
    if not isinstance(data, dict):
        raise BadRequest(f"{where}.reservation: expected an object")
    try:
        reservation = Reservation.from_json(rid, data)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise BadRequest(f"{where}.reservation: {exc!r}") from exc
    if reservation.team != team:
        raise BadRequest(f"{where}.reservation.team: {reservation.team!r} is not the request's team {team!r}")
    if reservation.amount <= 0:
        raise BadRequest(f"{where}.reservation.amount: must be positive")
    raw = item.get("candidates")
    candidates: dict[str, Fraction] | None = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise BadRequest(f"{where}.candidates: expected an object of type -> amount, or null")
        try:
            candidates = {str(key): Fraction(str(value)) for key, value in raw.items()}
        except (ValueError, ZeroDivisionError) as exc:
            raise BadRequest(f"{where}.candidates: {exc}") from exc
    return team, reservation, commit, candidates


def encode_result(result: Result | None, reason: str = "") -> dict[str, Any]:
    if not isinstance(result, ReservationOutcome) or result.behind is not None:
        return {"local": reason or (result.message if isinstance(result, Finding) else "not decided")}
    return {
        "excess": [
            {"team": e.team, "key": e.key, "limit": str(e.limit), "used": str(e.used),
             "requested": str(e.requested), "reserved": str(e.reserved)}
            for e in result.excess
        ],
        "usage": {key: str(amount) for key, amount in result.usage.items()},
    }


def decode_result(item: object) -> ReservationOutcome | None:
    """The leader's answer to one request; None (decide locally) for `local` or anything unexpected."""
    if not isinstance(item, dict) or "local" in item:
        return None
    try:
        excess = tuple(
            QuotaExcess(str(e["team"]), str(e["key"]), Fraction(e["limit"]), Fraction(e["used"]),
                        Fraction(e["requested"]), Fraction(e["reserved"]))
            for e in item["excess"]
        )
        usage = {str(key): Fraction(value) for key, value in item["usage"].items()}
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None
    return ReservationOutcome(None, excess, usage)


# ---- the leader's side --------------------------------------------------------------------------


def decode_writer(raw: object) -> tuple[str, int | None]:
    """The forwarding replica's `{"name", "watermark"}` (ledger rule 5), or BadRequest."""
    if raw is None:
        return "", None
    if not isinstance(raw, dict):
        raise BadRequest("writer: expected {\"name\": ..., \"watermark\": ...} or null")
    name, mark = raw.get("name"), raw.get("watermark")
    if not isinstance(name, str) or not 0 < len(name) <= 253:
        raise BadRequest("writer.name: expected the forwarding replica's writer name")
    if isinstance(mark, bool) or not isinstance(mark, int) or mark < 0:
        raise BadRequest("writer.watermark: expected a non-negative integer (a resourceVersion)")
    return name, mark


async def decide_forwarded(
    admitter: Admitter, items: list[Any], writer: tuple[str, int | None] = ("", None)
) -> list[dict[str, Any]]:
    """Decide every request with this replica's snapshot in its ledger's group commit (all at once,
    so they share a write; the write registers the forwarding `writer` too) and encode the answers
    in order."""
    decoded = [decode_request(item, i) for i, item in enumerate(items)]
    ledger = admitter.ledger
    if ledger is None:
        return [encode_result(None, "this replica keeps no quota ledger") for _ in decoded]
    # The context admissions decide with (a new state generation is built in steps meanwhile: the
    # previous one is as exact, accel.quota invariants 2 and 6), not the synchronous `context()`,
    # which would finish such a build at once and stall every admission in flight on the leader.
    ctx = await admitter._admission_context()
    now = admitter.clock()
    name, mark = writer
    if not decoded:  # registration only (its reconciler's heartbeat): written in the group commit
        if mark is not None:
            outcome = await ledger.run(
                lambda current: ReservationOutcome(current.registered(name, mark, now))
            )
            if not isinstance(outcome, ReservationOutcome):
                raise web.HTTPServiceUnavailable(text=f"quota ledger: {outcome.message}")
        return []
    teams = {team.name: team for team in ctx.policy.teams}

    async def one(team_name: str, reservation: Reservation, commit: bool,
                  candidates: dict[str, Fraction] | None) -> dict[str, Any]:
        team = teams.get(team_name)
        if team is None or not team.quota:
            return encode_result(None, f"team {team_name!r} has no quota in this replica's policy")
        request = QuotaRequest(reservation, team, commit, candidates)
        if not commit:
            return encode_result(decide_quota(request, ledger.last, ctx=ctx, now=now))
        outcome = await ledger.run(lambda current: decide_quota(request, current, ctx=ctx, now=now),
                                   watermark=ctx.watermark, peer=writer)
        return encode_result(outcome)

    return list(await asyncio.gather(*(one(*request) for request in decoded)))


def make_peer_app(
    admitter: Admitter,
    *,
    metrics: Metrics,
    client_names: tuple[str, ...] = (PEER_CLIENT_NAME,),
    ready: Callable[[], tuple[bool, str]] = lambda: (True, ""),
) -> web.Application:
    """The peer listener's app: `POST /ledger/decide` for verified replicas only (module docstring)."""
    app = make_base_app(
        name="webhook-peer", metrics=metrics, max_body_bytes=MAX_PEER_BODY, max_concurrency=64, ready=ready,
        authenticate=require_client_cert(
            client_names, app="webhook-peer", metrics=metrics, exempt=frozenset({"/healthz", "/readyz"}),
            who="another webhook replica",
        ),
    )
    app[METRICS_ELSEWHERE] = True  # the per-team series are on the metrics listener only

    async def decide(request: web.Request) -> web.Response:
        body = await read_json(request)
        items = body.get("requests")
        if not isinstance(items, list):
            raise BadRequest('body: expected {"requests": [...]}')
        if len(items) > MAX_REQUESTS:
            raise BadRequest(f"requests: at most {MAX_REQUESTS} per call, got {len(items)}")
        results = await decide_forwarded(admitter, items, decode_writer(body.get("writer")))
        return web.Response(body=orjson.dumps({"results": results}), content_type="application/json")

    app.router.add_post(PEER_PATH, decide)
    return app


# ---- the follower's side ------------------------------------------------------------------------


class ForwardFailed(Exception):
    """The leader did not answer (unreachable, slow, refused): decide, or register, locally."""


class PeerForwarder:
    """`serving.ledger.Forwarder` over HTTPS with this replica's client certificate.

    `server_name` is the name the leader's serving certificate carries (the webhook Service's DNS
    name): peers are dialled by pod IP, and the certificate is checked against that name."""

    def __init__(
        self,
        leadership: LedgerLeadership,
        *,
        client_cert_dir: Path,
        server_name: str,
        metrics: Metrics,
        timeout_s: float = FORWARD_TIMEOUT_S,
    ) -> None:
        self.leadership = leadership
        self.server_name = server_name
        self.timeout_s = timeout_s
        self.client_cert_dir = client_cert_dir
        self._files = _fingerprint(client_cert_dir)
        self._refused: Fingerprint | None = None  # files that would not load: not retried unchanged
        self._ssl = client_ssl_context(client_cert_dir)
        self._session: aiohttp.ClientSession | None = None
        self._suspect: tuple[str, float] | None = None  # (leader URL, monotonic time) of the last failure
        counter = metrics.counter(
            "accel_quota_ledger_forwarded_total",
            "Quota decisions this replica sent to the ledger leader, by result: decided there, or "
            "decided here after all (fallback: the leader unreachable, slow, or it declined).",
            ("result",),
        )
        self._decided = counter.labels("decided")
        self._fallback = counter.labels("fallback")

    def target(self) -> str | None:
        """The leader's URL, unless a call to it failed in the last SUSPECT_S: a paused or dying
        leader then costs one timeout, not one per batch, until its Lease expires."""
        target = self.leadership.forward_to()
        if target is not None and self._suspect is not None and self._suspect[0] == target:
            if time.monotonic() - self._suspect[1] < SUSPECT_S:
                return None
            self._suspect = None
        return target

    async def forward(
        self, target: str, requests: list[QuotaRequest], writer: tuple[str, int] | None = None
    ) -> list[Result | None]:
        await self._follow_rotation()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=8)
            )
        payload = orjson.dumps({
            "requests": [encode_request(request) for request in requests],
            "writer": None if writer is None else {"name": writer[0], "watermark": writer[1]},
        })
        try:
            async with self._session.post(
                target + PEER_PATH, data=payload, headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), server_hostname=self.server_name,
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            results = orjson.loads(body)["results"]
            if not isinstance(results, list) or len(results) != len(requests):
                raise RuntimeError("the leader answered a different number of results")
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            self._fallback.inc(len(requests))
            self._suspect = (target, time.monotonic())
            log.warning("quota ledger leader did not answer; deciding here",
                        extra={"leader": target, "error": repr(exc), "decisions": len(requests)})
            raise ForwardFailed(f"{target}: {exc!r}") from exc
        answers: list[Result | None] = [decode_result(item) for item in results]
        decided = sum(answer is not None for answer in answers)
        self._decided.inc(decided)
        self._fallback.inc(len(answers) - decided)
        return answers

    async def _follow_rotation(self) -> None:
        """A rotated client certificate (the Secret volume swaps its files) is used from the next
        call on: new TLS context, new connections. A half-written pair keeps the old one, and is not
        tried (nor logged) again on every call until a file changes again (as serving.tls invariant 1)."""
        files = _fingerprint(self.client_cert_dir)
        if files == self._files or files == self._refused:
            return
        try:
            context = client_ssl_context(self.client_cert_dir)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._refused = files
            log.warning("peer client certificate unreadable; keeping the previous one",
                        extra={"dir": str(self.client_cert_dir), "error": repr(exc)})
            return
        self._files, self._ssl = files, context
        if self._session is not None:
            await self._session.close()
            self._session = None
        log.info("peer client certificate reloaded", extra={"dir": str(self.client_cert_dir)})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _fingerprint(cert_dir: Path) -> Fingerprint | None:
    """The client certificate files' fingerprint (serving.tls `files_fingerprint`; None: one unreadable)."""
    return files_fingerprint(cert_dir / name for name in ("tls.crt", "tls.key", "ca.crt"))


def client_ssl_context(cert_dir: Path) -> ssl.SSLContext:
    """TLS client context: trust `ca.crt` of the directory, present its `tls.crt`/`tls.key`."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_dir / "ca.crt"))
    context.load_cert_chain(str(cert_dir / "tls.crt"), str(cert_dir / "tls.key"))
    return context


class PeerService:
    """The peer listener on `host:port` (TLS `tls`, client certificates required), the Lease
    election advertising `https://<advertise>:<bound port>`, and the forwarder wired into the
    admitter's ledger client; `cleanup_ctx` runs them with the webhook app. `port` and
    `leadership` are set while it runs."""

    def __init__(
        self,
        admitter: Admitter,
        *,
        host: str,
        port: int,
        advertise: str | None,
        tls: ReloadingTLS,
        client_cert_dir: Path,
        server_name: str,
        lease_store: LeaseStore,
        metrics: Metrics,
        lease_s: int = LEASE_S,
    ) -> None:
        if admitter.ledger is None:
            raise ValueError("a peer listener needs the quota ledger")
        self.admitter = admitter
        self.ledger = admitter.ledger
        self.host, self.requested_port, self.advertise = host, port, advertise
        self.tls = tls
        self.client_cert_dir = client_cert_dir
        self.server_name = server_name
        self.lease_store = lease_store
        self.metrics = metrics
        self.lease_s = lease_s
        self.port: int | None = None
        self.leadership: LedgerLeadership | None = None

    async def cleanup_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        peer_app = make_peer_app(self.admitter, metrics=self.metrics, ready=self.admitter.state.ready)
        peer_app.cleanup_ctx.append(self.tls.cleanup_ctx)
        runner = web.AppRunner(peer_app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port, ssl_context=self.tls.context).start()
        except OSError as exc:
            await runner.cleanup()
            raise CannotListen(
                f"cannot listen for ledger peers on {self.host}:{self.requested_port}: "
                f"{exc.strerror or exc}; "
                "stop what uses that port or choose another with --peer-port"
            ) from exc
        self.port = runner.addresses[0][1] if runner.addresses else self.requested_port
        url = f"https://{_url_host(self.advertise or self.host)}:{self.port}"
        log.info("serving ledger peers", extra={"host": self.host, "port": self.port, "advertised": url})
        leadership = self.leadership = LedgerLeadership(
            self.lease_store, identity=self.ledger.writer, peer_url=url, metrics=self.metrics,
            ready=lambda: self.admitter.state.ready()[0], lease_s=self.lease_s,
        )
        forwarder = PeerForwarder(leadership, client_cert_dir=self.client_cert_dir,
                                  server_name=self.server_name, metrics=self.metrics)
        self.ledger.forwarder = forwarder
        task = asyncio.create_task(leadership.run(), name="ledger-leader")
        try:
            yield
        finally:
            self.ledger.forwarder = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await leadership.release()
            await forwarder.close()
            await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
