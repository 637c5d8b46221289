"""Frees quota held for pods that never appeared, and tidies the ledger (accel.quota invariants 3, 6).

Each webhook replica runs `Reconciler.run`: every INTERVAL_S it reads the ledger and
1. drops entries past their TTL, stamps the entries its watch shows with its watch watermark and
   drops those every live writer's watch shows (accel.quota.ledger rules 4-5, `Ledger.pruned`),
   registering this replica's watermark when entries wait on it or its registration is due
   (`LedgerClient.wants_heartbeat`): an idle replica neither holds the others' entries back
   nor drops out of the writers the others wait for. A replica that is not ready (its watch
   failing or stale) does not re-register: it stops holding entries back after WRITER_LIVE_S,
   and its own decisions wait until its watch has passed the ledger's floor again;
2. drops entries older than GRACE_S whose pod the watch does not show, after asking the API server:
   no pod of that namespace/name, another pod under that name (other uid), a finished pod, or
   for a bind conversion (`bound/<uid>`) a pod that is still unbound (the Binding failed). Such a
   pod was rejected by a later admission step (a ResourceQuota, another webhook), deleted at once,
   or was a failed bind: its reservation is released within seconds instead of its full TTL.
A pod the API server still shows is kept (its watch event is on the way). While another replica
leads the ledger (webhook/peer.py), this one writes only to release such entries: the leader's
writes stamp and drop entries, and a registration goes through the leader (`register_via_leader`).
The pass tidies against the admission context in force (`Admitter.recent_context`: `visible` and
the watermark it reflects, one consistent snapshot) while that is at most half the grace old,
instead of building the current generation's context each second: an older snapshot tidies as
exactly (it stamps with an older watermark and drops no more than before: every write's horizon
is capped by its own watermark, accel.quota.ledger rules 4-5; the context in force never goes back
a generation, so neither does the watermark this replica registers), and a replica no longer builds a
context per state generation for its reconciler (an idle replica: every generation; a busy one:
at once, what its admissions build in steps). A snapshot older than that is brought up to date
first, so an entry past the grace whose pod the watch shows still counts as visible.
The change is one compare-and-swap write through the replica's `LedgerClient`, decided again against the
ledger it reads (another replica may have written meanwhile). Errors are logged and retried at
the next interval; admission never waits on this loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from accel.admission.messages import Finding
from accel.quota.ledger import Ledger, Reservation
from accel.quota.rules import BOUND_PREFIX, ReservationOutcome, tidied
from kube.errors import KubeError
from kube.protocol import ObjectSource
from webhook.admitter import Admitter

log = logging.getLogger(__name__)

GRACE_S = 5.0
INTERVAL_S = 1.0
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class Reconciler:
    """One replica's ledger tidying (module docstring); `released` counts grace-check releases."""

    def __init__(self, admitter: Admitter, pods: ObjectSource, *, grace_s: float = GRACE_S,
                 clock: Callable[[], float] | None = None) -> None:
        if admitter.ledger is None:
            raise ValueError("a reconciler needs a replica with a quota ledger")
        self.admitter = admitter
        self.ledger = admitter.ledger
        self.pods = pods
        self.grace_s = grace_s
        self.clock = clock or admitter.clock
        self.released = 0

    async def once(self) -> set[str]:
        """One pass; returns the ids dropped (empty when nothing was to drop, the write failed, or no
        policy is loaded yet: without one there is no visible-pod set to tidy against, and a replica
        that starts before its policy ConfigMap is read must not log a traceback every second)."""
        try:
            # The context admissions decide with, if at most half the grace old (module docstring).
            ctx = self.admitter.recent_context(self.grace_s / 2)
        except RuntimeError:  # serving.cluster_state: no valid policy loaded yet
            return set()
        now = self.clock()
        current = await self.ledger.read()
        visible, watermark = ctx.visible, ctx.watermark
        tidy = tidied(current, now=now, visible=visible, watermark=watermark)
        missing: set[str] = set()
        for rid, reservation in tidy.reservations.items():
            if rid in visible or now - reservation.created < self.grace_s:
                continue
            if not await self._pod_holds(rid, reservation):
                missing.add(rid)
        ready, _ = self.admitter.state.ready()
        heartbeat = ready and self.ledger.wants_heartbeat(watermark, visible, now)
        # Another replica leads the ledger: its writes stamp and drop entries (its own watch is as
        # good as this one's), and it registers this replica's watermark; a write from here would
        # only race its writes.
        if (not missing and self.ledger.following() and (
                not heartbeat or watermark is None or await self.ledger.register_via_leader(watermark))):
            return set()
        if not missing and not heartbeat and tidy.reservations == current.reservations:
            return set()

        def decide(ledger: Ledger) -> ReservationOutcome:
            return ReservationOutcome(
                tidied(ledger, now=now, visible=visible, watermark=watermark).without(missing)
            )

        if heartbeat and watermark is not None:
            outcome = await self.ledger.heartbeat(watermark, decide=decide)
        else:
            outcome = await self.ledger.run(decide, watermark=watermark)
        if isinstance(outcome, Finding):
            log.warning("quota ledger tidy failed; retrying", extra={"reason": outcome.message})
            return set()
        if missing:
            self.released += len(missing)
            log.info("released quota reservations whose pod never appeared", extra={"ids": sorted(missing)})
        return set(current.reservations) - set(self.ledger.last.reservations) | missing

    async def _pod_holds(self, rid: str, reservation: Reservation) -> bool:
        """Whether the API server shows the entry's pod, live (and bound, for a bind conversion)."""
        if not reservation.name or not reservation.namespace:
            return False  # an entry without a pod to look up cannot be confirmed: its grace is over
        items, _ = await self.pods.list("pods", reservation.namespace, name=reservation.name)
        uid = rid.removeprefix(BOUND_PREFIX)
        for pod in items:
            meta = pod.get("metadata") or {}
            if meta.get("uid") != uid:
                continue
            if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                return False
            return not rid.startswith(BOUND_PREFIX) or bool((pod.get("spec") or {}).get("nodeName"))
        return False

    async def run(self, interval_s: float = INTERVAL_S) -> None:
        """`once` every `interval_s` until cancelled; API errors are logged and retried."""
        while True:
            try:
                await self.once()
            except KubeError as exc:
                log.warning("quota ledger tidy: API server error; retrying", extra={"error": str(exc)})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("quota ledger tidy failed; retrying")
            await asyncio.sleep(interval_s)
