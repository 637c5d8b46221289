"""One replica's admission service: cluster state + ledger + metrics around the pure core.

`Admitter.mutate/validate(request)` return a core `Decision` after the mode rules; the HTTP layer
only parses and renders. The admission context (usage, visible reservations, selectors) is
rebuilt only when the cluster state's generation changes, so the hot path does no O(cluster) work.
Metrics are recorded once per decision here: `accel_admission_decisions_total{decision,reason,
profile,team}`, `accel_quota_used_gpus{team,type}` and `accel_quota_limit_gpus{team,type}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, Protocol

from accel.admission.context import AdmissionContext, ContextSteps, context_steps
from accel.admission.plan import Decision, MutationMemo, apply_mode, passthrough
from accel.admission.update import review_update
from accel.admission.validate import ValidationMemo, decide_quota, finish_validation
from accel.capacity.inventory import Inventory
from accel.policy.models import ALL_TYPES, Mode, ParsedPolicy
from accel.quota.charges import ChargeMemo
from accel.quota.ledger import Ledger
from accel.quota.rules import ReservationOutcome, limit_of, ratio_sum
from accel.quota.steps import finish_steps
from serving.ledger import LedgerClient
from serving.logs import StructuredLog
from serving.metrics import Metrics
from webhook.review import API_VERSION, KIND, AdmissionRequest, build_response, plain_pod_create

log = logging.getLogger(__name__)
audit_log = StructuredLog(log)


class StateView(Protocol):
    """What admission reads from `serving.cluster_state.StateView`."""

    @property
    def parsed(self) -> ParsedPolicy: ...
    @property
    def inventory(self) -> Inventory: ...
    @property
    def generation(self) -> int: ...


class StateSource(Protocol):
    """What admission reads from `serving.cluster_state.ClusterState`."""

    def view(self) -> Any: ...
    def policy(self) -> ParsedPolicy: ...
    def ready(self) -> tuple[bool, str]: ...


class Admitter:
    """Admission for one replica (see module docstring)."""

    def __init__(
        self,
        state: StateSource,
        *,
        metrics: Metrics,
        ledger: LedgerClient | None,
        clock: Callable[[], float],
        replica_id: str,
        annotation_writers: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self.annotation_writers = annotation_writers  # may change frozen pod keys (accel.admission.update)
        self.ledger = ledger
        self.clock = clock
        self.replica_id = replica_id
        self._ctx: AdmissionContext | None = None
        self._ctx_key: tuple[int, int, int] | None = None
        self._ctx_at = float("-inf")  # `clock()` when the context in force was put in force
        self._steps: tuple[tuple[int, int, int], ContextSteps] | None = None  # a build in steps, its key
        self._builder: asyncio.Task[None] | None = None  # the task running `_steps`
        self._build_failed = False
        self.in_flight = 0  # admissions the HTTP layer is answering now, this one included (webhook.app)
        self._charges = ChargeMemo()
        self._mutations = MutationMemo()  # pods of one template are planned once per context
        self._validations = ValidationMemo()  # and validated once per context (the ledger per request)
        self._by_raw: dict[int, tuple[Decision, Mode, Decision]] = {}  # `_moded`
        self._rendered: dict[int, tuple[Decision, dict[str, Any] | None]] = {}  # `respond`
        self._counted: dict[tuple[str, str, str, str], Any] = {}
        # `accel_quota_used_gpus`: what each team's series shows, computed when /metrics is read
        # (`_used_value`); a request only stores its team's latest usage (`_publish_team`).
        self._used_now: dict[str, tuple[Mapping[str, Fraction], str | None, Fraction]] = {}
        self._published: set[tuple[str, str]] = set()  # (team, quota key) series set by `_publish_quota`
        # The non-GPU fast path's policy facts and answers (`answer_plain`), for `_plain_parsed`.
        self._plain_parsed: ParsedPolicy | None = None
        self._plain_excluded: frozenset[str] = frozenset()
        self._plain: dict[tuple[str, bool], tuple[Decision, dict[str, Any]]] = {}
        self.decisions = metrics.counter(
            "accel_admission_decisions_total",
            "Admission decisions by outcome (allowed, denied, warned), reason code, profile and team.",
            ("decision", "reason", "profile", "team"),
        )
        self.quota_used = metrics.gauge(
            "accel_quota_used_gpus",
            "GPU-equivalents a team uses per type ('*' = all types).",
            ("team", "type"),
        )
        self.quota_limit = metrics.gauge(
            "accel_quota_limit_gpus",
            "A team's quota in GPU-equivalents per type ('*' = all types).",
            ("team", "type"),
        )

    def context(self) -> AdmissionContext:
        """The admission context of the current state generation (built once per generation). A build
        in progress (the steps `_admission_context` gave a task) is finished at once first."""
        if self._steps is not None:
            self._finish_pending()
        view = self.state.view()
        key = (id(view.parsed), id(view.inventory), int(view.generation))
        if self._ctx is None or key != self._ctx_key:
            self._install(key, finish_steps(self._steps_for(view)))
        assert self._ctx is not None
        return self._ctx

    def recent_context(self, max_age_s: float) -> AdmissionContext:
        """The context in force if it was put in force at most `max_age_s` ago, without finishing a
        build in progress or starting one; else `context()`. For work that needs a consistent
        snapshot (`visible` with its `watermark`) but not the newest one (webhook.reconcile): a
        synchronous build there costs a replica a context per state generation it would otherwise skip
        (an idle replica) or would build in steps (a busy one)."""
        if self._ctx is not None and not self._build_failed and self.clock() - self._ctx_at <= max_age_s:
            return self._ctx
        return self.context()

    async def _admission_context(self) -> AdmissionContext:
        """The context a GPU admission decides with: `context()`, except while a new state generation
        is being built.

        A new generation costs milliseconds to build (every pod the watch shows anew: its ledger ids,
        its charge), and every admission in flight used to wait for all of it (the p99). Now a task
        builds it in sub-millisecond steps (accel.admission.context.context_steps) with the event loop
        running between them, and until it is done admissions decide with the previous generation's
        context, as if the watch had shown the change those milliseconds later: quota stays exact
        (the ledger holds every admission until the snapshot deciding it shows its pod, accel.quota
        invariants 2 and 6; serving.cluster_state rule 1 lets a view lag the same way). The admission
        that starts the build waits for it when it is alone (`in_flight`, counted by webhook.app): a
        sequential caller sees every change at once; admissions arriving meanwhile do not wait."""
        if self._ctx is None or self._build_failed:
            self._build_failed = False
            return self.context()
        if self._steps is not None:
            return self._ctx  # the next generation is being built
        view = self.state.view()
        key = (id(view.parsed), id(view.inventory), int(view.generation))
        if key == self._ctx_key:
            return self._ctx
        steps = self._steps_for(view)
        self._steps = (key, steps)
        builder = self._builder = asyncio.get_running_loop().create_task(
            self._build(key, steps), name="admission-context"
        )
        if self.in_flight > 1:
            return self._ctx
        await asyncio.shield(builder)  # cancelled meanwhile: the task goes on
        return self.context()  # the new one (or, if the build failed, the error: built at once)

    async def _build(self, key: tuple[int, int, int], steps: ContextSteps) -> None:
        """Run `steps` one per turn of the event loop and put the context in force (unless a
        synchronous `context()` finished them first)."""
        try:
            while True:
                await asyncio.sleep(0)  # the admission that started it goes on first; then a step a turn
                if self._steps is None or self._steps[1] is not steps:
                    return  # a synchronous `context()` finished it
                try:
                    next(steps)
                except StopIteration as done:
                    self._steps = None
                    self._install(key, done.value)
                    return
        except asyncio.CancelledError:  # the loop is closing: leave the watch ids whole
            if self._steps is not None and self._steps[1] is steps:
                self._finish_pending()
            raise
        except Exception:  # a bug: the next admission builds at once and fails there, visibly
            log.exception("admission context build failed")
            self._steps, self._build_failed = None, True

    def _steps_for(self, view: Any) -> ContextSteps:
        """The steps that build `view`'s context from the one in force (its memos, its watch ids)."""
        return context_steps(view.parsed, view.inventory, generation=int(view.generation),
                             charges=self._charges, previous=self._ctx, now=self.clock(),
                             watermark=getattr(view, "watermark", None))

    def _finish_pending(self) -> None:
        """Run the rest of the build in progress at once, and put its context in force."""
        assert self._steps is not None
        key, steps = self._steps
        self._steps = None
        self._install(key, finish_steps(steps))

    def _install(self, key: tuple[int, int, int], ctx: AdmissionContext) -> None:
        self._ctx, self._ctx_key, self._ctx_at = ctx, key, self.clock()
        self._publish_quota(ctx)

    def _publish_quota(self, ctx: AdmissionContext) -> None:
        """Set the quota gauges of every (team, quota key) of the policy, and remove the series of
        pairs the policy no longer has (a renamed or deleted team, a dropped quota key), so a
        dashboard never shows a team that does not exist any more at its last value."""
        current: set[tuple[str, str]] = set()
        for team in ctx.policy.teams:
            self._used_now[team.name] = (ctx.usage.get(team.name, {}), None, Fraction(0))
            for key in team.quota:
                current.add((team.name, key))
                limit = limit_of(team, key) or Fraction(0)
                self.quota_limit.labels(team=team.name, type=key).set(float(limit))
                if (team.name, key) not in self._published:
                    self._used_series(team.name, key)
        for team_name, key in self._published - current:
            for gauge in (self.quota_limit, self.quota_used):
                with contextlib.suppress(KeyError):  # never set on this replica
                    gauge.remove(team_name, key)
        self._published = current
        teams = {team for team, _ in current}
        self._used_now = {team: used for team, used in self._used_now.items() if team in teams}

    def _used_series(self, team: str, key: str) -> None:
        """The `accel_quota_used_gpus{team,type}` series, read from `_used_now` when scraped."""
        self.quota_used.labels(team=team, type=key).set_function(lambda: self._used_value(team, key))

    def _used_value(self, team: str, key: str) -> float:
        """A team's usage on one quota key as its last admission (or the watch, after a state
        change) left it: the type's share, or every type's for "*", plus what that admission
        reserved on the key. Exact sum, one division (= float of the Fraction sum)."""
        usage, reserved_type, amount = self._used_now.get(team, ({}, None, Fraction(0)))
        parts = list(usage.values()) if key == ALL_TYPES else [usage.get(key, Fraction(0))]
        if reserved_type is not None and key in (ALL_TYPES, reserved_type):
            parts.append(amount)
        numerator, denominator = ratio_sum(parts)
        return numerator / denominator

    def _count(self, decision: Decision) -> None:
        """One decision in the counter; label children are cached (a `labels()` lookup per request
        costs more than the whole non-GPU fast path)."""
        key = (decision.outcome, decision.reason, decision.profile or "-", decision.team or "-")
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.decisions.labels(
                decision=key[0], reason=key[1], profile=key[2], team=key[3]
            )
        child.inc()

    def _log(self, kind: str, uid: str, namespace: str, decision: Decision) -> None:
        """The audit line of one admission (INFO, logger `webhook.admitter`), written as a cheap
        structured write (serving.logs.StructuredLog) when logging is set up as `accel serve` does."""
        if log.isEnabledFor(logging.INFO):
            audit_log.info(
                "admission",
                {"uid": uid, "webhook": kind, "decision": decision.outcome, "reason": decision.reason,
                 "profile": decision.profile, "team": decision.team, "namespace": namespace},
            )

    def _record(self, kind: str, request: AdmissionRequest, decision: Decision) -> Decision:
        self._count(decision)
        self._log(kind, request.uid, request.pod_namespace, decision)
        return decision

    def answer_plain(self, body: Any, *, mutating: bool) -> dict[str, Any] | None:
        """The answer to a review of a pod asking for no accelerator, decided on the raw JSON
        (`webhook.review.plain_pod_create`), or None to take the full path. Same decision, audit,
        metric and log as the full path (mutate/validate rule 1), without building any model and
        without the cluster state: the decision reads only the policy (excluded namespaces, mode),
        so such a pod never waits for an inventory or admission context rebuild."""
        found = plain_pod_create(body)
        if found is None:
            return None
        uid, namespace = found
        parsed = self.state.policy()
        if parsed is not self._plain_parsed:  # a new policy: its facts and answers, decided once
            self._plain_parsed, self._plain = parsed, {}
            self._plain_excluded = frozenset(parsed.policy.settings.excluded_namespaces)
        reason = "excluded-namespace" if namespace in self._plain_excluded else "no-accelerator"
        answer = self._plain.get((reason, mutating))
        if answer is None:  # a pure function of (reason, mode, endpoint); the response without its uid
            decision = apply_mode(passthrough(reason), parsed.policy.settings.mode)
            response = build_response("", decision, mutating=mutating)["response"]
            del response["uid"]
            answer = self._plain[(reason, mutating)] = (decision, response)
        decision, response = answer
        self._count(decision)
        self._log("mutate" if mutating else "validate", uid, namespace, decision)
        return {"apiVersion": API_VERSION, "kind": KIND, "response": {"uid": uid, **response}}

    async def mutate(self, request: AdmissionRequest) -> Decision:
        if not request.is_pod_create or request.object is None:
            return self._record("mutate", request, Decision(True, "not-a-pod-create"))
        ctx = await self._admission_context()
        raw = self._mutations.mutate(
            request.object,
            namespace=request.pod_namespace,
            ctx=ctx,
            ledger=self.ledger.last if self.ledger else None,
            now=self.clock(),
        )
        mode = ctx.policy.settings.mode
        moded = self._moded(raw, mode) if self._mutations.last_hit else apply_mode(raw, mode)
        return self._record("mutate", request, moded)

    def _moded(self, raw: Decision, mode: Mode) -> Decision:
        """`apply_mode(raw, mode)` of a remembered mutation (a MutationMemo hit): the same object
        again for the same decision, so `respond` renders it once too. Bounded; holds `raw` and
        the result, so their ids stay theirs."""
        found = self._by_raw.get(id(raw))
        if found is not None and found[0] is raw and found[1] is mode:
            return found[2]
        moded = apply_mode(raw, mode)
        if len(self._by_raw) >= MutationMemo.MAX_SHAPES:
            self._by_raw, self._rendered = {}, {}
        self._by_raw[id(raw)] = (raw, mode, moded)
        self._rendered[id(moded)] = (moded, None)
        return moded

    def respond(self, uid: str, decision: Decision, *, mutating: bool) -> dict[str, Any]:
        """`build_response(uid, decision, mutating=...)`; the rest of the answer of a remembered
        mutation (`_moded`) is rendered once (its patch is not re-encoded per pod)."""
        slot = self._rendered.get(id(decision)) if mutating else None
        if slot is None or slot[0] is not decision:
            return build_response(uid, decision, mutating=mutating)
        response = slot[1]
        if response is None:
            response = build_response("", decision, mutating=True)["response"]
            del response["uid"]
            self._rendered[id(decision)] = (decision, response)
        return {"apiVersion": API_VERSION, "kind": KIND, "response": {"uid": uid, **response}}

    async def validate(self, request: AdmissionRequest) -> Decision:
        if not request.is_pod_create or request.object is None:
            return self._record("validate", request, Decision(True, "not-a-pod-create"))
        ctx = await self._admission_context()
        now = self.clock()
        plan = self._validations.plan(
            request.object, namespace=request.pod_namespace, ctx=ctx, request_uid=request.uid, now=now,
            dry_run=request.dry_run,
        )
        uid, namespace = request.uid, request.pod_namespace
        del request  # the pod is planned: not held through the ledger's await (webhook.app._admit)
        decision = plan.decision
        if plan.quota is not None:
            quota = plan.quota
            outcome: Any
            if self.ledger is None:
                outcome = decide_quota(quota, Ledger(), ctx=ctx, now=now)
            elif quota.commit:
                # forward=: while another replica leads the ledger, it decides (webhook/peer.py)
                outcome = await self.ledger.run(
                    lambda ledger: decide_quota(quota, ledger, ctx=ctx, now=now), watermark=ctx.watermark,
                    forward=quota,
                )
            else:
                outcome = decide_quota(quota, await self._read_ledger(), ctx=ctx, now=now)
            decision = finish_validation(plan, outcome, ctx)
            if isinstance(outcome, ReservationOutcome):
                reserved = decision.allowed and quota.commit
                self._publish_team(quota.team.name, quota.reservation.type, outcome, reserved,
                                   quota.reservation.amount)
        decision = apply_mode(decision, ctx.policy.settings.mode)
        self._count(decision)
        self._log("validate", uid, namespace, decision)
        return decision

    async def review_update(self, request: AdmissionRequest) -> Decision:
        """A pod UPDATE (accel.admission.update): frozen keys change only by accel's identities."""
        if not request.is_pod_update:
            return self._record("update", request, Decision(True, "not-a-pod-update"))
        settings = self.context().policy.settings
        raw = review_update(request.old_object, request.object, username=request.user_info.username,
                            writers=self.annotation_writers, team_pod_label=settings.team_pod_label)
        return self._record("update", request, apply_mode(raw, settings.mode))

    async def _read_ledger(self) -> Ledger:
        assert self.ledger is not None
        try:
            return await self.ledger.read()
        except Exception as exc:  # a read-only evaluation falls back to the last ledger seen
            log.warning("quota ledger read failed; using the last one seen", extra={"error": str(exc)})
            return self.ledger.last

    def _publish_team(self, team: str, accel_type: str, outcome: ReservationOutcome, reserved: bool,
                      amount: Fraction) -> None:
        """Record the team's usage after this admission (the usage it was decided on, plus what it
        reserved): one assignment per request; the gauge values are computed when read."""
        if team in self._used_now:  # `_publish_quota` entered every team of the policy
            self._used_now[team] = (outcome.usage, accel_type if reserved else None, amount)
