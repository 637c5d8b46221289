"""The extender's decision engine: filter, prioritize, preempt and bind plans over one cluster snapshot.

Per state generation it keeps an `accel.placement.index.ClusterIndex` (device model, node class
and topology class per node, as numpy columns by node position), rebuilt incrementally. A
request is then: node names -> positions (one dict lookup per name), positions -> class ids
(vectorised), one verdict or component score per *distinct* class (memoised per class id, valid
across generations), and a vectorised gather back to the names. Nodes with assumed binds are the
only ones re-classed per request.

`ExtenderCore` is composed of one object per step over one shared `accel.placement.state.ExtenderState`
(snapshot, learned mix, assumed binds, job holds, caches; its rules cover counting pods, assumed
binds and why all of it is per process): `FilterStep` (accel.placement.filter), `ScoreStep`
(accel.placement.prioritize), `BindStep` (accel.placement.bind, which explains with the score step)
and `PreemptStep` (accel.placement.preempt). Callers (the aiohttp adapter, the demo, benchmarks)
use only the methods below; `state` is there for tests that look inside.

Rules:
1. The engine is pure: the caller passes the snapshot and `now`; IO (binding) stays outside.
2. A bind is two-phase: `begin_bind` plans it and assumes its devices taken; the caller then binds
   and calls `finish_bind` (success: record the job's leaf hold) or `abort_bind` (failure: the
   devices are free again at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from accel.capacity.inventory import Inventory
from accel.cluster.catalog import Catalog
from accel.cluster.pods import PodView
from accel.placement.bind import BindPlan, BindStep, JobQuotaOf, PriceProfile
from accel.placement.filter import FilterStep
from accel.placement.filter_columns import FilterColumns, FilterOutcome
from accel.placement.filter_rules import PodRequest, Verdict
from accel.placement.index import ClusterIndex
from accel.placement.preempt import PreemptStep, TeamOf
from accel.placement.prioritize import Scores, ScoreStep
from accel.placement.state import FILTER_MEMO_LIMIT, ExtenderState
from accel.policy.models import Policy


class ExtenderCore:
    """Learned workload, assumed binds and per-generation caches; one per extender process."""

    def __init__(
        self,
        *,
        half_life: float = 2000.0,
        refresh_every: int = 256,
        filter_memo_limit: int = FILTER_MEMO_LIMIT,
    ) -> None:
        """`filter_memo_limit`: filter decisions kept for reuse (see `filter_columns`; 0: none)."""
        self.state = ExtenderState(
            half_life=half_life, refresh_every=refresh_every, filter_memo_limit=filter_memo_limit
        )
        self._filter = FilterStep(self.state)
        self._scorer = ScoreStep(self.state)
        self._binder = BindStep(self.state, self._scorer)
        self._preempter = PreemptStep(self.state)

    # ---- snapshot and request -------------------------------------------------------------------
    def index(
        self, generation: int, policy: Policy, inventory: Inventory, catalog: Catalog | None = None
    ) -> ClusterIndex:
        """The index of this generation (rebuilt incrementally); `catalog` refreshes list prices and
        throughput for the scarcity component when it changed."""
        index = self.state.index(generation, policy, inventory)
        if catalog is not None:
            self.state.use_catalog(catalog)
        return index

    def request(self, pod: PodView, index: ClusterIndex, now: float) -> PodRequest:
        """Resolve the pod against the policy, remember it for bind and count it in the learned mix."""
        return self.state.request(pod, index, now)

    # ---- filter ---------------------------------------------------------------------------------
    def filter_columns(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterColumns:
        """The filter decision as columns, for a renderer that works on columns (see FilterStep)."""
        return self._filter.filter_columns(index, req, names, key)

    def outcome(self, index: ClusterIndex, cols: FilterColumns) -> FilterOutcome:
        """`cols` spelled out per name (passed, failed with reasons)."""
        return self._filter.outcome(index, cols)

    def filter(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> FilterOutcome:
        """Which candidates pass, and why the others fail, in request order."""
        return self._filter.filter(index, req, names, key)

    def required_topology(
        self, index: ClusterIndex, req: PodRequest, cols: FilterColumns
    ) -> FilterOutcome | None:
        """Kueue required topology, per node, over what `cols` passed (None: the pod requires none);
        the renderer must then use this outcome instead of the columns."""
        return self._filter.required_topology(index, req, cols)

    # ---- prioritize -----------------------------------------------------------------------------
    def scores(
        self, index: ClusterIndex, req: PodRequest, names: Sequence[str], key: bytes | None = None
    ) -> Scores:
        """Score 0..10 for every candidate, in the order given; unknown nodes get 0."""
        return self._scorer.scores(index, req, names, key)

    # ---- preempt --------------------------------------------------------------------------------
    def preempt(
        self, index: ClusterIndex, req: PodRequest, victims: Mapping[str, Sequence[str]], team_of: TeamOf
    ) -> list[str]:
        """The candidate nodes where evicting their proposed victims (all of the preemptor's team,
        unless the policy allows otherwise) lets the pod pass the filter."""
        return self._preempter.preempt(index, req, victims, team_of)

    def preempt_verdict(
        self, index: ClusterIndex, req: PodRequest, name: str, uids: Sequence[str], team_of: TeamOf
    ) -> Verdict:
        """The preempt decision for one node, with the reason (for logs and tests)."""
        return self._preempter.preempt_verdict(index, req, name, uids, team_of)

    # ---- bind (rule 2) --------------------------------------------------------------------------
    def begin_bind(
        self, index: ClusterIndex, *, namespace: str, name: str, uid: str, node: str, now: float, ttl: float,
        catalog: Catalog | None = None, price_profile: PriceProfile | None = None,
        job_quota: JobQuotaOf | None = None,
    ) -> BindPlan:
        """The devices and annotations for the pod on `node` (BindRefused if it cannot have them); the
        devices count as taken until `finish_bind`/`abort_bind` or the TTL."""
        plan = self._binder.plan_bind(
            index, namespace=namespace, name=name, uid=uid, node=node, now=now, ttl=ttl, catalog=catalog,
            price_profile=price_profile, job_quota=job_quota,
        )
        self.state.assumptions.assume(plan.assumption)
        return plan

    def finish_bind(self, plan: BindPlan) -> None:
        """The bind was written: hold the job's leaf for its remaining pods (accel.placement.state rule 3)."""
        if plan.hold is not None:
            self.state.hold(plan.hold)

    def abort_bind(self, uid: str) -> None:
        """The bind failed: the pod's assumed devices are free again."""
        self.state.assumptions.forget(uid)
