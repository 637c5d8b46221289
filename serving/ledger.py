"""The quota ledger's compare-and-swap loop over the `CasStore` Protocol.

One attempt = read `accel-quota-ledger` (data + resourceVersion), decide in the pure core, and if
the decision changes the ledger write it back with the version just read. A conflict means another
replica wrote in between: re-read and decide again with its reservation included. So two replicas
can never both take the last free GPU (accel/quota/rules.py invariant 4).

Bounded: after `attempts` conflicts in a row the admission is denied with a retry message
(controllers retry on their own); a store error (API server unreachable) denies too, with the
cause. Between attempts a short, growing, jittered pause spreads the contenders apart.

Retention (accel/quota/rules.py invariant 6): each write registers this client as a writer with
the smallest pod-watch watermark of the decisions it carries (`run(..., watermark=)`), so
entries every live writer's watch shows leave the document; `heartbeat` keeps an idle writer
registered and lets the entries its watch now shows go. A decision the pure core answers
`behind` (its snapshot predates the ledger's floor) is refused with a retry message. A floor not below
the document's own resourceVersion (restored from another cluster, hand-edited) is ignored
(`_within_history`): no watch here would ever reach it, which would refuse every decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, Protocol

from accel.admission import messages as msg
from accel.admission.messages import Finding
from accel.admission.validate import QuotaRequest
from accel.quota.ledger import LEDGER_KEY, WRITER_LIVE_S, Ledger, Writer, parse_watermark
from accel.quota.rules import LEDGER_NAME, ReservationOutcome
from kube.errors import KubeError
from kube.protocol import CasStore
from serving.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 16
BASE_BACKOFF_S = 0.001
MAX_BACKOFF_S = 0.05
CONTENDED_S = 0.25  # another writer wrote this recently: it is likely to write again now
MAX_YIELD_S = 0.05
HEARTBEAT_S = WRITER_LIVE_S / 4  # an idle writer re-registers this often: well inside WRITER_LIVE_S

Decide = Callable[[Ledger], ReservationOutcome]
Result = ReservationOutcome | Finding


class Forwarder(Protocol):
    """Where this replica's decisions go while another replica leads (serving/ledger_leader.py,
    webhook/peer.py): `target()` is the leader's peer URL or None; `forward` sends a batch of
    forwardable requests there, with this writer's name and the oldest watermark of their
    snapshots (the leader registers it with its write, rule 5, as this replica's own write
    would), and answers each with its result, or None for "decide it here"."""

    def target(self) -> str | None: ...

    async def forward(
        self, target: str, requests: list[QuotaRequest], writer: tuple[str, int] | None
    ) -> list[Result | None]: ...
_instances = itertools.count()


def default_writer() -> str:
    """A writer name unique per client: host (the pod's name), process, and client in the process."""
    return f"{socket.gethostname()}/{os.getpid()}/{next(_instances)}"


class LedgerClient:
    """CAS access to the ledger for one webhook replica; `last` is the last ledger it saw.

    Group commit: decisions that arrive while a write is in flight are queued and then decided
    together, in arrival order, against one read of the ledger (each sees the reservations of
    those before it) and persisted with one CAS write. Within a replica nothing contends; across
    replicas the CAS version check keeps the result exact. A lost race re-decides the whole batch.
    The first attempt decides against the ledger this replica last read or wrote (no read round
    trip); if another replica wrote since, the CAS write fails and the retry reads afresh.
    """

    def __init__(
        self,
        store: CasStore,
        *,
        name: str = LEDGER_NAME,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        writer: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.store = store
        self.name = name
        self.writer = writer or default_writer()
        self._wall = wall
        self.attempts = attempts
        self.last = Ledger()
        self.conflicts = 0
        self.writes = 0
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._cached: tuple[str | None, Ledger] | None = None
        self._write_s = 0.0  # how long the last write took
        self._metrics = _LedgerMetrics(metrics or Metrics(), name)
        self.forwarder: Forwarder | None = None  # set when the replicas elect a ledger leader

    async def read(self) -> Ledger:
        """The current ledger (also remembered as `last`)."""
        data, version = await self.store.read(self.name)
        return self._parse(data, version)

    def _parse(self, data: dict[str, str], version: str | None) -> Ledger:
        if self._cached is None or self._cached[0] != version or version is None:
            self._cached = (version, _within_history(Ledger.from_data(data), version, self.name))
            self._metrics.size(self._cached[1], len(data.get(LEDGER_KEY, "")))
        self.last = self._cached[1]
        return self.last

    async def run(
        self, decide: Decide, *, watermark: int | None = None, forward: QuotaRequest | None = None,
        peer: tuple[str, int | None] | None = None,
    ) -> ReservationOutcome | Finding:
        """Decide against the current ledger and persist the result with CAS (see class docstring).
        `watermark`: the pod-watch watermark of the snapshot `decide` uses (registered with the write).
        `forward`: the same decision as a request the ledger leader can make (`Forwarder`); while
        another replica leads it decides it instead, and `decide` runs here only when that fails.
        `peer`: this decision is another replica's, forwarded here (its writer name and watermark):
        the write that carries it registers that writer too, and after it this client waits about
        one write's time before the next, so the peer's next batch (sent when it gets its answers)
        joins this replica's own decisions in one write instead of alternating with them.

        Every decision waits for its result from the flusher task: the first caller that finds no
        flush running starts one, which begins on the next turn of the event loop, so decisions
        already on their way (requests read in the same turn) join its first write instead of
        each writing alone; later ones queue for the next write. A caller that is cancelled only
        abandons its own result: the flusher is its own task and always settles the whole batch.
        """
        future: asyncio.Future[ReservationOutcome | Finding] = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(decide, future, watermark, forward, peer))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=f"ledger-flush-{self.name}")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                if self.forwarder is not None:
                    batch = await self._forwarded(batch)
                    if not batch:
                        continue
                await self._settle(batch)
                if any(pending.peer is not None for pending in batch):
                    await self._sleep(min(self._write_s, MAX_YIELD_S))  # the peer's next batch joins
                elif self._pending and self._contended():
                    # Another writer is busy too: after our write, let its write through first (about
                    # one write's time) instead of racing it at once; ours then carries more decisions.
                    await self._sleep(min(self._write_s, MAX_YIELD_S))
        finally:
            self._flusher = None

    async def _forwarded(self, batch: list[Pending]) -> list[Pending]:
        """Send the forwardable decisions of `batch` to the leader, if another replica leads; settle
        those it answered and return the rest (not forwardable, or to decide here after all: the
        same reservation id then overwrites whatever the leader may have written)."""
        assert self.forwarder is not None
        target = self.forwarder.target()
        if target is None:
            return batch
        sent = [(pending, pending.forward) for pending in batch if pending.forward is not None]
        if not sent:
            return batch
        marks = [pending.watermark for pending, _ in sent if pending.watermark is not None]
        writer = (self.writer, min(marks)) if marks else None
        try:
            answers = await self.forwarder.forward(target, [request for _, request in sent], writer)
        except Exception as exc:  # the forwarder reports its own failures; here: decide locally
            log.debug("forward to the ledger leader failed", extra={"error": repr(exc)})
            return batch
        rest = [pending for pending in batch if pending.forward is None]
        for (pending, _), answer in zip(sent, answers, strict=True):
            if answer is None:
                rest.append(pending)
            elif not pending.future.done():
                pending.future.set_result(answer)
        return rest

    async def _settle(self, batch: list[Pending]) -> None:
        try:
            results = await self._commit(batch)
        except BaseException as exc:  # every waiter gets the error; later batches still run
            for pending in batch:
                if not (future := pending.future).done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for pending, result in zip(batch, results, strict=True):
            if (future := pending.future).done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _commit(self, batch: list[Pending]) -> list[ReservationOutcome | Finding | Exception]:
        """Decide the batch and CAS-write it; only a successful write trusts the cached ledger.
        A decision that raises is that caller's result alone (the others are decided as if it
        had not been there). After a lost write the decisions queued meanwhile join the retry
        (`batch` grows): they would be decided on the same fresh read, and one write instead of
        two leaves the other writer one fewer chance to collide."""
        optimistic = self._cached is not None and self._cached[0] is not None
        attempt = 0
        try:
            while attempt < self.attempts:
                if optimistic and self._cached is not None:
                    version, ledger = self._cached
                else:
                    data, version = await self.store.read(self.name)
                    ledger = self._parse(data, version)
                start = ledger
                outcomes: list[ReservationOutcome | Finding | Exception] = []
                for decide, *_ in batch:
                    try:
                        outcome = decide(ledger)
                    except Exception as exc:  # a broken decision fails its own caller only
                        outcomes.append(exc)
                        continue
                    ledger = outcome.ledger if outcome.ledger is not None else ledger
                    outcomes.append(_refusal(outcome) if outcome.behind is not None else outcome)
                if ledger is start:
                    if optimistic:  # a denial from a possibly stale ledger: decide again on a fresh read
                        optimistic = False
                        continue
                    return outcomes
                marks = [pending.watermark for pending in batch if pending.watermark is not None]
                if marks:  # rule 5: the oldest snapshot this write's decisions used
                    ledger = ledger.registered(self.writer, min(marks), self._wall())
                for name, mark in _peer_marks(batch).items():  # and of the peers it decided for
                    ledger = ledger.registered(name, mark, self._wall())
                data = ledger.to_data()
                started = time.perf_counter()
                new_version = await self.store.write(self.name, data, version)
                self._write_s = time.perf_counter() - started
                if new_version is not None:
                    self.writes += 1
                    self._metrics.written(ledger, len(data[LEDGER_KEY]), len(batch))
                    self._cached = (new_version, ledger)
                    self.last = ledger
                    return outcomes
                optimistic = False
                self.conflicts += 1
                self._metrics.conflicts.inc()
                await self._sleep(self._rng.uniform(0, min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2**attempt)))
                batch.extend(self._pending)
                self._pending = []
                attempt += 1
        except KubeError as exc:
            log.warning("quota ledger unavailable", extra={"error": str(exc), "ledger": self.name})
            unavailable = msg.ledger_unavailable(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
            return [unavailable] * len(batch)
        return [msg.ledger_busy(self.attempts)] * len(batch)


    def _contended(self) -> bool:
        """Whether another writer wrote the ledger in the last CONTENDED_S (as of the last ledger seen):
        then the cached copy is likely stale, and a write from it would only lose the race."""
        now = self._wall()
        return any(
            name != self.writer and now - w.at < CONTENDED_S for name, w in self._cached_writers().items()
        )

    def _cached_writers(self) -> Mapping[str, Writer]:
        return self._cached[1].writers if self._cached is not None else {}

    async def register_via_leader(self, watermark: int) -> bool:
        """Register this writer at `watermark` through the ledger leader's next write (rule 5)
        instead of a write of its own, which would race the leader's; False when no other
        replica leads or it did not answer (then write yourself)."""
        target = self.forwarder.target() if self.forwarder is not None else None
        if self.forwarder is None or target is None:
            return False
        try:
            await self.forwarder.forward(target, [], (self.writer, watermark))
        except Exception as exc:  # the forwarder logged it; the caller writes itself
            log.debug("registration through the ledger leader failed", extra={"error": repr(exc)})
            return False
        return True

    def following(self) -> bool:
        """Whether another replica leads the ledger now (this one forwards its decisions there)."""
        return self.forwarder is not None and self.forwarder.target() is not None

    def wants_heartbeat(self, watermark: int | None, visible: frozenset[str], now: float) -> bool:
        """Whether this writer should write only to register (rule 5): it is registered in the last
        ledger seen with an older watermark than `watermark` while entries wait on it (stamped up to
        `watermark`, or shown by `visible` and not stamped yet), or it was last registered
        HEARTBEAT_S ago or more, or not at all (with entries in the document)."""
        if watermark is None:
            return False
        ledger = self.last
        mine = ledger.writers.get(self.writer)
        if not ledger.reservations:
            return mine is not None and now - mine.at >= HEARTBEAT_S  # stay live while others write
        if mine is None or now - mine.at >= HEARTBEAT_S:
            return True
        if mine.watermark >= watermark:
            return False
        return any(
            mine.watermark < r.seen <= watermark if r.seen is not None else rid in visible
            for rid, r in ledger.reservations.items()
        )

    async def heartbeat(self, watermark: int, *, decide: Decide) -> ReservationOutcome | Finding:
        """One write that registers this writer at `watermark` (plus what `decide` changes)."""

        def registering(ledger: Ledger) -> ReservationOutcome:
            outcome = decide(ledger)
            if outcome.behind is not None:
                return outcome
            base = outcome.ledger if outcome.ledger is not None else ledger
            return ReservationOutcome(base.registered(self.writer, watermark, self._wall()))

        return await self.run(registering, watermark=watermark)


class Pending(NamedTuple):
    """A decision waiting for the flusher: its caller's future, its snapshot's watermark, and the
    same decision as the ledger leader can make it (`LedgerClient.run(forward=)`)."""

    decide: Decide
    future: asyncio.Future[ReservationOutcome | Finding]
    watermark: int | None
    forward: QuotaRequest | None = None
    peer: tuple[str, int | None] | None = None  # decided for another replica (`LedgerClient.run`)


def _peer_marks(batch: list[Pending]) -> dict[str, int]:
    """The oldest watermark per peer writer of the forwarded decisions in `batch`."""
    marks: dict[str, int] = {}
    for pending in batch:
        if pending.peer is not None and pending.peer[1] is not None:
            name, mark = pending.peer[0], pending.peer[1]
            marks[name] = min(mark, marks.get(name, mark))
    return marks


def _refusal(outcome: ReservationOutcome) -> Finding:
    """Rule 6: the decision's snapshot predates the ledger's floor; its watch catches up in moments."""
    assert outcome.behind is not None
    watermark, floor = outcome.behind
    at = f"resourceVersion {watermark}" if watermark is not None else "no resourceVersion"
    return msg.ledger_unavailable(
        f"this replica's pod watch ({at}) is behind the quota ledger (resourceVersion {floor})"
    )


def _within_history(ledger: Ledger, version: str | None, name: str) -> Ledger:
    """`ledger`, or with floor 0 when its floor is not below the document's own resourceVersion.

    A legitimate floor always is below it: it is a watermark some writer's watch had reached before
    the write that raised it, and every later write only raises the version. A floor at or past it
    comes from another history (a ledger restored from another cluster's backup, a hand edit) and
    says nothing about this cluster's pods; kept, no watch here would reach it and every decision of
    every replica would be refused as behind, forever. (Nor would the document's version do: pod
    watches only pass it at the next pod change.) So it reads as a document without a floor, as one
    of the format before watermarks does (accel.quota.ledger `Ledger.from_data`)."""
    stored = parse_watermark(version) if version is not None else None
    if stored is None or ledger.floor < stored:
        return ledger
    log.warning(
        "quota ledger floor is not below its own resourceVersion (restored or edited); ignoring it",
        extra={"ledger": name, "floor": ledger.floor, "resource_version": stored},
    )
    return dataclasses.replace(ledger, floor=0)


class _LedgerMetrics:
    """What an admin watches of the ledger (README, "Quota"): its size and how often, how much and
    how contended it is written. Label `ledger` = the ConfigMap's name."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        labels = ("ledger",)
        self.writes = metrics.counter(
            "accel_quota_ledger_writes_total",
            "Successful compare-and-swap writes of the quota ledger.",
            labels,
        ).labels(name)
        self.decisions = metrics.counter(
            "accel_quota_ledger_decisions_total",
            "Quota decisions persisted by those writes (group commit: several per write).",
            labels,
        ).labels(name)
        self.written_bytes = metrics.counter(
            "accel_quota_ledger_written_bytes_total", "Bytes of ledger document written.", labels
        ).labels(name)
        self.conflicts = metrics.counter(
            "accel_quota_ledger_conflicts_total",
            "Writes refused because another writer changed the ledger first (then read and decided again).",
            labels,
        ).labels(name)
        self.bytes = metrics.gauge(
            "accel_quota_ledger_bytes", "Size of the ledger document last read or written.", labels
        ).labels(name)
        self.entries = metrics.gauge(
            "accel_quota_ledger_entries", "Entries in the ledger document last read or written.", labels
        ).labels(name)

    def size(self, ledger: Ledger, size: int) -> None:
        self.bytes.set(size)
        self.entries.set(len(ledger.reservations))

    def written(self, ledger: Ledger, size: int, decisions: int) -> None:
        self.writes.inc()
        self.decisions.inc(decisions)
        self.written_bytes.inc(size)
        self.size(ledger, size)
