"""The extender's bind planning: the devices a pod gets on its node and the annotations to write.

Pure (accel.placement rule 1): the plan is returned, the caller does the bind and records the
`Assumption` so later filter/prioritize calls see the devices as taken (accel.placement.state rule 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from accel.capacity.devices import Assumption, DeviceError, format_assignment
from accel.cluster.catalog import Catalog
from accel.cluster.pods import DEVICES_ANNOTATION, TYPE_ANNOTATION, PodView
from accel.placement.filter_rules import PodRequest, check_node, resolve_request
from accel.placement.index import ClusterIndex
from accel.placement.prioritize import ScoreStep
from accel.placement.score import PLACEMENT_ANNOTATION, Explanation, explain
from accel.placement.score_rules import choose_assignment
from accel.placement.state import ExtenderState, JobHold, JobQuota
from accel.policy.models import Profile
from accel.policy.pricing import COST_ANNOTATION, PRICE_ANNOTATION, gpu_hour_price, price_annotations

PriceProfile = Callable[[PodView, str], Profile | None]  # (pod, bound type) -> the profile priced
JobQuotaOf = Callable[[PodView], JobQuota]  # the pod's team quota, capping its job's hold (state rule 3)


@dataclass(frozen=True, slots=True)
class BindPlan:
    pod: PodView
    node: str
    annotations: dict[str, str]
    assumption: Assumption
    explanation: Explanation | None = None  # also in annotations[PLACEMENT_ANNOTATION]
    hold: JobHold | None = None  # record with the assumption (accel.placement.state rule 3)


class BindRefused(Exception):
    """The bind cannot be done as asked; the message says why (sent back as `Error`)."""


class BindStep:
    """The bind step of `accel.placement.core.ExtenderCore`: explains its choice with the prioritize step."""

    def __init__(self, state: ExtenderState, scorer: ScoreStep) -> None:
        self.state = state
        self.scorer = scorer

    def plan_bind(
        self,
        index: ClusterIndex,
        *,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        now: float,
        ttl: float,
        catalog: Catalog | None = None,
        price_profile: PriceProfile | None = None,
        job_quota: JobQuotaOf | None = None,
    ) -> BindPlan:
        """Pick devices for the pod on `node` and the annotations to write; BindRefused if it cannot.
        `job_quota` caps the leaf hold for the pod's job by its team's quota (state rule 3).

        The type annotation and, with a `catalog`, the price annotations are ALWAYS those of the
        type the pod actually got (the node's), overwriting whatever the pod carried: the
        webhook's estimate for a multi-type pod, or a value its author wrote (issue 21: a user
        `cost-per-hour: "0.01"` must not survive binding). Unpriced types get "" for both.
        """
        self.state.assumptions.prune(now, index.bound_uids)
        pod = self.state.pods_seen.get(uid) or index.pods_by_uid.get(uid)
        if pod is None or (pod.namespace, pod.name) != (namespace, name):
            raise BindRefused(
                f"accel: pod {namespace}/{name} (uid {uid}) is not known to the extender yet; retry"
            )
        req = resolve_request(pod, index.policy)
        devices = self.state.effective(index, node, exclude_uid=uid)
        verdict = check_node(req, node, index.node(node), devices)
        if not verdict.ok or devices is None:
            raise BindRefused(f"accel: cannot bind {namespace}/{name} to {node}: {verdict.reason}")
        annotations: dict[str, str] = {}
        assignment: dict[str, tuple[int, ...]] = {}
        if req.wants_accelerators:
            try:
                assignment = choose_assignment(
                    devices,
                    dict(req.resources),
                    self.state.shaped(req, index),
                    self.state.mix,
                    strategy=index.policy.settings.scoring.strategy,
                    context=self.state.context,
                )
            except DeviceError as exc:
                raise BindRefused(f"accel: cannot bind {namespace}/{name} to {node}: {exc}") from None
            annotations = {
                TYPE_ANNOTATION: devices.gpu_type,
                DEVICES_ANNOTATION: format_assignment(assignment),
            }
            if catalog is not None:
                annotations |= _bind_prices(pod, index, node, devices.gpu_type, catalog, price_profile)
        explanation = self.explain_bind(index, req, node, devices.gpu_type if req.wants_accelerators else "")
        annotations[PLACEMENT_ANNOTATION] = explanation.to_annotation()
        expires = now + ttl if math.isfinite(ttl) else math.inf
        assumption = Assumption(uid, pod.key, node, assignment, expires, req.job, assumed_at=now)
        quota = (lambda: job_quota(pod)) if job_quota is not None else None
        hold = self.state.hold_after_bind(index, req, node, now, quota)
        return BindPlan(pod, node, annotations, assumption, explanation, hold)

    def explain_bind(self, index: ClusterIndex, req: PodRequest, node: str, accel_type: str) -> Explanation:
        """Why `node`: from the pod's last prioritize breakdown when it scored `node`, else (the
        scheduler skips prioritize when one node passed its filters) from scoring `node` alone."""
        job = f"{req.job[0]}/{req.job[1]}" if req.job else None
        kept = self.state.breakdowns.get(req.pod.uid)
        if kept is not None and node in kept.names:
            return explain(kept.names, kept.combined, node, accel_type, job=job)
        pos, cids, tids = self.state.columns(index, [node], None)
        combined = self.scorer.combine_columns(index, req, [node], pos, cids, tids)
        return explain([node], combined, node, accel_type, job=job)


def _bind_prices(
    pod: PodView, index: ClusterIndex, node: str, accel_type: str, catalog: Catalog,
    price_profile: PriceProfile | None = None,
) -> dict[str, str]:
    """Cost annotations for the type the pod got at bind (see `BindStep.plan_bind`), priced under
    `price_profile(pod, type)` (the extender passes accel.quota.chargeback.priced_profile: never
    an edited profile annotation that lowers the price), else under the requested profile."""
    unpriced = {PRICE_ANNOTATION: "", COST_ANNOTATION: ""}  # a Binding can only set values, not remove them
    inventory_node = index.node(node)
    if inventory_node is None:
        return unpriced
    profile = (price_profile(pod, accel_type) if price_profile is not None
               else index.policy.profile(pod.requested_profile or ""))
    equivalents = sum(
        (
            inventory_node.gpu_equivalents(resource, units, catalog)
            for resource, units in pod.accelerators.items()
        ),
        Fraction(0),
    )
    return price_annotations(gpu_hour_price(profile, accel_type, catalog), equivalents) or unpriced
