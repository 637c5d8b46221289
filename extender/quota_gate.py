"""The extender's per-type quota gate: the IO around `accel.quota.bind` (filter and bind rules).

One per extender app. Per state generation it computes the watch's team usage and the ledger ids
the watch accounts for (accel.quota invariant 2, kept by an `accel.quota.watch.WatchIds` as in the webhook).
`narrow` (filter) reads the ledger and marks the types whose quota is full for the pod; `convert`
(bind) writes the pod's `bound/<uid>` entry with compare-and-swap through a `LedgerClient`
before the Binding, `undo` removes it when the Binding fails. Ledger timestamps are wall-clock
seconds (`wall`), comparable with the webhook replicas'. `keep_registered` (a task of the app)
keeps the extender a live writer of the ledger with its pod watch's watermark
(accel.quota invariant 6), so its binds are never refused as behind the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from accel.admission.messages import Finding
from accel.cluster.pods import PodView
from accel.placement.filter_rules import PodRequest
from accel.quota.bind import (
    bind_check,
    blocked_types,
    conversion,
    decide_conversion,
    full_reason,
    gated_team,
)
from accel.quota.charges import ChargeMemo
from accel.quota.ledger import Ledger
from accel.quota.rules import ReservationOutcome, bound_id, team_usage_now, tidied
from accel.quota.watch import WatchIds
from serving.ledger import HEARTBEAT_S, LedgerClient

log = logging.getLogger(__name__)


class QuotaGate:
    """Per-type quota at filter and bind (module docstring)."""

    def __init__(self, ledger: LedgerClient, *, wall: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.wall = wall
        self._charges = ChargeMemo()
        self._key: tuple[int, int, int] | None = None
        self._base: Mapping[str, Mapping[str, Fraction]] = {}
        self._visible: frozenset[str] = frozenset()
        self._watch_ids = WatchIds()  # updated per generation from what changed (accel.quota.watch)

    def _watch(self, view: Any) -> tuple[Mapping[str, Mapping[str, Fraction]], frozenset[str]]:
        key = (id(view.parsed), id(view.inventory), int(view.generation))
        if key != self._key:
            inventory, parsed = view.inventory, view.parsed
            self._base = self._charges.usage(parsed, inventory)
            self._visible = self._watch_ids.update(
                inventory.pods, now=self.wall(),
                keep_s=float(parsed.policy.settings.quota.reservation_ttl_seconds),
                deleted=inventory.deleted_pods)
            self._key = key
        return self._base, self._visible

    async def _ledger(self) -> Ledger:
        try:
            return await self.ledger.read()
        except Exception as exc:  # the bind re-checks against a fresh read; the filter may use the last one
            log.warning(
                "quota ledger read failed in filter; using the last one seen", extra={"error": str(exc)}
            )
            return self.ledger.last

    async def narrow(self, view: Any, req: PodRequest) -> PodRequest:
        """`req` with the types whose team quota has no room for the pod blocked (accel.quota.bind rule 2)."""
        policy = view.parsed.policy
        team = gated_team(req.pod, view.inventory, policy, view.parsed.catalog)
        if team is None:
            return req
        base, visible = self._watch(view)
        now = self.wall()
        usage = team_usage_now(team.name, base, await self._ledger(), visible=visible, now=now,
                               exclude=bound_id(req.pod.uid))
        blocked = blocked_types(team, req.pod, view.inventory, view.parsed.catalog, usage)
        return dataclasses.replace(req, blocked_types=blocked) if blocked else req

    async def convert(self, view: Any, pod: PodView, node: str) -> tuple[str | None, str]:
        """Rule 3 before binding `pod` to `node`: (entry id to undo on a failed bind or None, error text or
        "")."""
        policy = view.parsed.policy
        inventory_node = view.inventory.node(node)
        gate = (
            bind_check(pod, inventory_node, view.inventory, policy, view.parsed.catalog)
            if inventory_node
            else None
        )
        if gate is None or inventory_node is None:
            return None, ""  # no quota line for the node's type, or the pod is charged as that type already
        team, charged = gate
        base, visible = self._watch(view)
        now = self.wall()
        ttl = float(policy.settings.quota.reservation_ttl_seconds)
        entry = conversion(
            team, pod, inventory_node, view.inventory, view.parsed.catalog, now=now, ttl=ttl, charged=charged
        )

        watermark = getattr(view, "watermark", None)

        def decide(ledger: Ledger) -> ReservationOutcome:
            return decide_conversion(
                ledger, entry, team=team, base=base, visible=visible, now=now, watermark=watermark
            )

        outcome = await self.ledger.run(decide, watermark=watermark)
        if isinstance(outcome, Finding):
            return None, f"accel: cannot bind {pod.namespace}/{pod.name} now: {outcome.message}"
        if outcome.excess:
            return None, f"{full_reason(outcome.excess[0])} (bind to {node} refused; the scheduler retries)"
        return entry.id, ""

    async def keep_registered(self, state: Any, interval_s: float = HEARTBEAT_S / 2) -> None:
        """Until cancelled: register this writer's watch watermark when due (serving.ledger), so
        entries the extender's watch shows leave the document and the webhooks do not wait for it."""
        while True:
            try:
                view = state.view()
                watermark = getattr(view, "watermark", None)
                _, visible = self._watch(view)
                now = self.wall()
                ready, _ = state.ready()  # a stale watch must not hold the others' entries back
                if watermark is not None and ready and self.ledger.wants_heartbeat(watermark, visible, now):
                    await self.ledger.heartbeat(watermark, decide=_tidy(now, visible, watermark))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no policy yet, API server away: try again next time
                log.debug("quota ledger registration skipped", extra={"error": str(exc)})
            await asyncio.sleep(interval_s)

    async def undo(self, entry_id: str) -> None:
        """Remove a conversion whose Binding failed (best effort: the webhook's reconciler also would)."""

        def decide(ledger: Ledger) -> ReservationOutcome:
            return ReservationOutcome(ledger.without((entry_id,)))

        outcome = await self.ledger.run(decide)
        if isinstance(outcome, Finding):
            log.warning(
                "could not undo a quota conversion; the reconciler releases it", extra={"id": entry_id}
            )


def _tidy(now: float, visible: frozenset[str], watermark: int) -> Callable[[Ledger], ReservationOutcome]:
    """The registration write's decision: stamp and drop what this snapshot allows (ledger rules 4-5)."""

    def decide(ledger: Ledger) -> ReservationOutcome:
        return ReservationOutcome(tidied(ledger, now=now, visible=visible, watermark=watermark))

    return decide
