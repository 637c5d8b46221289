"""One quota-ledger writer at a time: the webhook replicas elect a leader with a Lease.

Two replicas writing the ledger at once lose compare-and-swap races (their read-decide-write round
trips overlap: ~25 lost writes per 150 admissions through a real API server). So the replicas
elect one writer, and the others forward the quota step of their admissions to it
(webhook/peer.py), where it joins the leader's own group commit.

1. Election: the Lease `accel-quota-ledger-leader` (coordination.k8s.io/v1) in the controller
   namespace. Every replica looks at it each RENEW_S; the holder renews it (a compare-and-swap
   update of `renewTime`). A Lease whose resourceVersion has not changed for its
   `leaseDurationSeconds`, as measured on this replica's own monotonic clock from when it first saw
   that version (as client-go's leader election does: no clocks of two hosts are compared), is
   expired and may be taken, again by compare-and-swap, so only one replica takes it.
2. The holder advertises where its peer listener is: annotation `accel.dev/ledger-peer` on the
   Lease (`https://<pod IP>:<peer port>`). `forward_to()` is that URL while another replica holds
   a fresh Lease, else None (this replica leads, or nobody does): then it writes itself.
3. Exactness never depends on the Lease. The leader decides forwarded requests with its own
   snapshot inside its own CAS-checked group commit, exactly as if it had admitted the pod itself
   (accel/quota/rules.py invariants); a replica that believes it leads while another took over
   (paused past the lease) is only a second CAS writer, as before this existed. A forward that
   fails or times out falls back to the replica's own CAS write of the same reservation id, which
   overwrites itself and is excluded from its own decision: never counted twice, only slower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kube.errors import KubeError
from kube.names import LEDGER_CONFIGMAP, LEDGER_LEADER_LEASE
from kube.protocol import JsonObject, LeaseStore
from serving.metrics import Metrics

log = logging.getLogger(__name__)

LEASE_S = 4  # leaseDurationSeconds: how long a silent holder keeps the lead
RENEW_S = 1.0  # how often every replica looks at (and the holder renews) the Lease
PEER_ANNOTATION = "accel.dev/ledger-peer"


@dataclass(frozen=True, slots=True)
class Observed:
    """The Lease as this replica last read it, and when (monotonic) its version last changed."""

    version: str | None
    holder: str
    peer: str
    duration_s: float
    changed_at: float


class LedgerLeadership:
    """This replica's view of (and part in) the ledger leader election (module docstring).

    `identity` is unique per process (the ledger writer name, host/pid/n); `peer_url` is where
    this replica's peer listener answers, or None: it then never takes the lead (it could not be
    reached) but still forwards to a leader. A replica that is not `ready()` (its watch failing or
    stale) neither takes nor renews the Lease: the others would otherwise wait on its decisions."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        peer_url: str | None,
        name: str = LEDGER_LEADER_LEASE,
        lease_s: int = LEASE_S,
        renew_s: float = RENEW_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
        ready: Callable[[], bool] = lambda: True,
        ledger: str = LEDGER_CONFIGMAP,
    ) -> None:
        self.store = store
        self.identity = identity
        self.peer_url = peer_url
        self.name = name
        self.lease_s = lease_s
        self.renew_s = renew_s
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._ready = ready
        self._observed: Observed | None = None
        self._renewed_at: float | None = None  # when this replica last wrote the Lease as holder
        metrics = metrics or Metrics()
        self._leading = metrics.gauge(
            "accel_quota_ledger_leader",
            "1 while this webhook replica holds the quota ledger leader Lease (writes for the others).",
            ("ledger",),
        ).labels(ledger)

    @property
    def leading(self) -> bool:
        """Whether this replica holds the Lease as of its last successful renewal (within the lease)."""
        return self._renewed_at is not None and self._clock() - self._renewed_at < self.lease_s

    def forward_to(self) -> str | None:
        """The leader's peer URL while another replica holds a fresh Lease; else None."""
        seen = self._observed
        if seen is None or not seen.holder or seen.holder == self.identity or not seen.peer:
            return None
        if self._clock() - seen.changed_at >= seen.duration_s:
            return None  # its holder stopped renewing: write ourselves until someone takes it
        return seen.peer

    async def step(self) -> None:
        """Read the Lease once; renew it if held, take it if free or expired (one CAS write)."""
        lease, version = await self.store.read_lease(self.name)
        now = self._clock()
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        peer = str(((lease.get("metadata") or {}).get("annotations") or {}).get(PEER_ANNOTATION, ""))
        duration = _duration(spec.get("leaseDurationSeconds"), self.lease_s)
        seen = self._observed
        changed_at = seen.changed_at if seen is not None and seen.version == version else now
        self._observed = Observed(version, holder, peer, duration, changed_at)
        mine = holder == self.identity
        expired = version is None or not holder or now - changed_at >= duration
        if self.peer_url is None or not (mine or expired) or not self._ready():
            if not mine:
                self._lost()
            return
        stamp = _micro_time(self._now())
        new_spec: JsonObject = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_s,
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if mine else stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        }
        written = await self.store.write_lease(
            self.name, new_spec, {PEER_ANNOTATION: self.peer_url}, version
        )
        if written is None:  # another replica renewed or took it first: read it next time
            self._lost()
            return
        if not mine:
            log.info("took the quota ledger lead", extra={"identity": self.identity, "previous": holder})
        self._renewed_at = now
        self._observed = Observed(written, self.identity, self.peer_url, float(self.lease_s), now)
        self._leading.set(1)

    def _lost(self) -> None:
        if self._renewed_at is not None:
            log.info("no longer the quota ledger leader", extra={"identity": self.identity})
        self._renewed_at = None
        self._leading.set(0)

    async def release(self) -> None:
        """Give the Lease up (shutdown): the others take it at their next look instead of waiting
        out the lease. Best effort: a failure only means they wait."""
        seen = self._observed
        if not self.leading or seen is None or seen.holder != self.identity:
            return
        try:
            await self.store.write_lease(
                self.name, {"holderIdentity": "", "leaseDurationSeconds": self.lease_s}, {}, seen.version
            )
        except KubeError as exc:
            log.warning("could not release the quota ledger lead", extra={"error": str(exc)})
        self._lost()

    async def run(self) -> None:
        """`step` every `renew_s` until cancelled; an API error is logged and retried next time
        (meanwhile `forward_to` lapses with the Lease, so this replica writes itself)."""
        failing = ""  # the last error logged: a lasting one (e.g. no RBAC for the Lease) is logged once
        while True:
            try:
                await self.step()
                if failing:
                    log.info("quota ledger leader lease reachable again", extra={"identity": self.identity})
                failing = ""
            except KubeError as exc:
                if str(exc) != failing:
                    log.warning("quota ledger leader lease unavailable; every replica writes the ledger "
                                "itself meanwhile", extra={"error": str(exc)})
                failing = str(exc) or type(exc).__name__
                self._lost()
            await self._sleep(self.renew_s)


def _duration(value: object, default: int) -> float:
    """`leaseDurationSeconds` as written (another version may use another), else ours."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(default)


def _micro_time(at: datetime) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
