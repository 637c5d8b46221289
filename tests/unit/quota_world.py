"""An in-memory cluster with two webhook replicas and one extender, for the quota flow tests.

`QuotaWorld` drives `kube.fake.FakeCluster` the way the API server and kube-scheduler would:
`create` = mutating review on one replica, the API server's uid and name, validating review on
a replica (possibly the other), then the pod is stored unless a later admission step rejects it
(a ResourceQuota, another webhook) or the request is a dry run. `bind` = the extender's filter
(with its quota gate) and `/bind` on the first passing node in the profile's preference order.
Each replica and the extender see the cluster only when `sync`ed: their watches may lag. A sync
gives the state the cluster's resourceVersion as its watch watermark, as a pod informer would
(accel.quota invariant 6); `legacy=True` gives none (the settle-time rule of a static state).
`forwarding=(modes...)`: replica 0 leads the ledger and replica 1 forwards its quota steps to it
(webhook/peer.py, through the wire encoding, without HTTP); each call, in turn, is answered
("answer"), decided and written but its answer lost ("lost": a timeout after the leader's
write), or not made ("refused"): the follower then decides itself.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import jsonpatch

from accel.capacity.inventory import (
    Inventory,
    NodeInventory,
    pod_accelerator_type,
    pod_gpu_equivalents,
)
from accel.cluster.catalog import UNKNOWN_TYPE
from accel.cluster.pods import parse_pod
from accel.policy.models import ALL_TYPES, ParsedPolicy
from accel.policy.pricing import gpu_hour_price, price_annotations
from accel.quota.ledger import Ledger
from accel.quota.rules import LEDGER_NAME, SETTLE_S, team_usage_now
from extender.app import EXTENDER, Extender, _do_bind
from extender.app import make_app as make_extender
from extender.quota_gate import QuotaGate
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient, Result
from serving.metrics import Metrics
from tests.builders import example_policy, make_inventory, review
from tests.builders import node_model as gpu_node
from webhook.admitter import Admitter
from webhook.peer import decide_forwarded, decode_result, encode_request
from webhook.reconcile import Reconciler
from webhook.review import parse_review

H200, H100, A100 = "nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb"
QUOTA = {H200: 3, A100: 4, ALL_TYPES: 6}
NODES: tuple[NodeInventory, ...] = (
    gpu_node("h200-a", H200, "NVIDIA-H200", count=2),  # H200 free only in fragments: 2 + 1
    gpu_node("h200-b", H200, "NVIDIA-H200", count=1),
    gpu_node("a100-a", A100, "NVIDIA-A100-SXM4-80GB", count=4),
    gpu_node("a100-b", A100, "NVIDIA-A100-SXM4-80GB", count=2),
)


def world_policy() -> ParsedPolicy:
    return example_policy(teams=[{"name": "nlp", "quota": QUOTA}])


class QuotaWorld:
    """See module docstring. `clock` is wall time for every component (ledger timestamps)."""

    def __init__(
        self,
        policy: ParsedPolicy | None = None,
        nodes: tuple[NodeInventory, ...] = NODES,
        *,
        legacy: bool = False,
        forwarding: tuple[str, ...] = (),
    ) -> None:
        self.policy = policy or world_policy()
        self.nodes = nodes
        self.legacy = legacy
        self.cluster = FakeCluster()
        self.clock = ManualClock(1_000_000.0)
        self.replicas: list[Admitter] = []
        self.reconcilers: list[Reconciler] = []
        for i in range(2):
            state = ClusterState.static(self.policy, self.inventory(), watermark=self.watermark())
            ledger = LedgerClient(self.cluster, wall=self.clock)
            admitter = Admitter(state, metrics=Metrics(), ledger=ledger, clock=self.clock,
                                replica_id=f"webhook-{i}")
            self.replicas.append(admitter)
            self.reconcilers.append(Reconciler(admitter, self.cluster))
        if forwarding:
            follower = self.replicas[1].ledger
            assert follower is not None
            follower.forwarder = InProcessForwarder(self.replicas[0], forwarding)
        self.extender_state = ClusterState.static(self.policy, self.inventory(), watermark=self.watermark())
        app = make_extender(self.extender_state, metrics=Metrics(), binder=self.cluster, clock=self.clock,
                            ledger_store=self.cluster)
        self.extender: Extender = app[EXTENDER]
        self.extender.gate = QuotaGate(LedgerClient(self.cluster, wall=self.clock), wall=self.clock)
        self._ids = itertools.count()
        self.denials: list[str] = []

    # ---- what the components see ---------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for p in self.cluster._objects["pods"].values()]

    def inventory(self) -> Inventory:
        return make_inventory(self.pods() if hasattr(self, "cluster") else (), nodes=self.nodes)

    def watermark(self) -> int | None:
        return None if self.legacy else int(self.cluster.resource_version)

    def sync(self, who: int) -> None:
        """Replica 0/1, or 2 = the extender, catches up with the cluster."""
        state = self.extender_state if who == 2 else self.replicas[who].state
        state.update_static(inventory=self.inventory(), watermark=self.watermark())  # type: ignore[attr-defined]

    def sync_all(self) -> None:
        for who in range(3):
            self.sync(who)

    # ---- the API server and kube-scheduler -----------------------------------------------

    async def create(
        self,
        *,
        profile: str,
        gpus: int,
        mutator: int = 0,
        validator: int = 0,
        rejected_later: bool = False,
        dry_run: bool = False,
        annotations: Mapping[str, str] | None = None,
        node_name: str | None = None,
    ) -> dict[str, Any] | None:
        """One pod CREATE through both webhooks; the stored pod, or None when it was not stored."""
        n = next(self._ids)
        pod = review_pod(profile, gpus, annotations, node_name)
        mutated = await self.replicas[mutator].mutate(
            parse_review(review(pod, uid=f"m{n}", dry_run=dry_run)).request
        )
        if not mutated.allowed:
            self.denials.append(mutated.finding.message if mutated.finding else mutated.reason)
            return None
        pod = jsonpatch.apply_patch(pod, list(mutated.ops))
        pod["metadata"]["uid"] = f"pod-{n}"  # the API server names the pod before validating admission
        pod["metadata"]["name"] = f"train-{n}"
        validated = await self.replicas[validator].validate(
            parse_review(review(pod, uid=f"v{n}", dry_run=dry_run)).request)
        if not validated.allowed:
            self.denials.append(validated.finding.message if validated.finding else validated.reason)
            return None
        if rejected_later or dry_run:
            return None
        return self.cluster.apply(pod)

    def delete(self, name: str) -> None:
        self.cluster.delete("pods", name, "nlp")

    def pending(self) -> list[dict[str, Any]]:
        return sorted(
            (p for p in self.pods() if not p["spec"].get("nodeName")), key=lambda p: p["metadata"]["name"]
        )

    async def bind(self, name: str) -> str:
        """kube-scheduler for one pending pod: filter, then /bind on the best passing node;
        returns the node, or "" when no node passed or the bind answered an Error."""
        self.sync(2)
        obj = self.cluster.get("pods", name, "nlp")
        if obj is None or obj["spec"].get("nodeName"):
            return ""
        ext = self.extender
        core, index, _ = ext.index()
        view = parse_pod(obj)
        req = core.request(view, index, self.clock())
        assert ext.gate is not None
        req = await ext.gate.narrow(ext.state.view(), req)
        passed = core.filter(index, req, [n.name for n in self.nodes]).passed
        passed = [n for n in passed if _affinity_allows(obj, index.node(n))]
        if not passed:
            return ""
        order = list(req.profile_types)
        best = min(
            passed, key=lambda n: order.index(t) if (t := index.node(n).accelerator_type) in order else 99
        )  # type: ignore[union-attr]
        error, _ = await _do_bind(ext, "nlp", name, obj["metadata"]["uid"], best)
        return "" if error else best

    async def settle(self) -> None:
        """Every watch catches up, time passes beyond every grace, both reconcilers run."""
        self.sync_all()
        self.clock.advance(SETTLE_S + 1)
        for reconciler in self.reconcilers:
            await reconciler.once()

    # ---- the truth ---------------------------------------------------------------------

    def real_usage(self) -> dict[str, Fraction]:
        """Per type (UNDECIDED = pending pods whose type the bind fixes) and "*", from the stored pods."""
        inventory = self.inventory()
        usage: dict[str, Fraction] = {}
        for pod in inventory.pods:
            accel_type = pod_accelerator_type(pod, inventory, self.policy.catalog)
            amount = pod_gpu_equivalents(pod, inventory, self.policy.catalog, self.policy.policy)
            usage[accel_type] = usage.get(accel_type, Fraction(0)) + amount
            usage[ALL_TYPES] = usage.get(ALL_TYPES, Fraction(0)) + amount
        return usage

    async def seen_usage(self, replica: int) -> dict[str, Fraction]:
        """What replica `replica` counts for nlp (watch + ledger), per type and "*", zeros dropped."""
        ctx = self.replicas[replica].context()
        data, _ = await self.cluster.read(LEDGER_NAME)
        usage = team_usage_now(
            "nlp", ctx.usage, Ledger.from_data(data), visible=ctx.visible, now=self.clock()
        )
        usage = {t: v for t, v in usage.items() if v}
        if usage:
            usage[ALL_TYPES] = sum(usage.values(), Fraction(0))
        return usage

    def wrong_prices(self) -> list[str]:
        """Bound pods whose type or price annotations are not those of their node's type."""
        wrong = []
        inventory = self.inventory()
        for obj in self.pods():
            node = inventory.node(obj["spec"].get("nodeName") or "")
            if node is None:
                continue
            view = parse_pod(obj)
            profile = self.policy.policy.profile(view.requested_profile or "")
            equivalents = pod_gpu_equivalents(view, inventory, self.policy.catalog, self.policy.policy)
            want = price_annotations(
                gpu_hour_price(profile, node.accelerator_type, self.policy.catalog), equivalents
            )
            notes = obj["metadata"].get("annotations") or {}
            got = {k: notes.get(k) for k in want}
            if got != want or notes.get("accelerator.opendatahub.io/type") != (
                node.accelerator_type or UNKNOWN_TYPE
            ):
                wrong.append(f"{obj['metadata']['name']} on {node.name}: {got} != {want}")
        return wrong


class InProcessForwarder:
    """`serving.ledger.Forwarder` to another replica's `decide_forwarded` (module docstring)."""

    def __init__(self, leader: Admitter, modes: tuple[str, ...]) -> None:
        self.leader = leader
        self.modes = modes
        self.calls = 0

    def target(self) -> str | None:
        return "in-process"

    async def forward(
        self, target: str, requests: list[Any], writer: tuple[str, int] | None
    ) -> list[Result | None]:
        mode = self.modes[self.calls % len(self.modes)]
        self.calls += 1
        if mode == "refused":
            raise ConnectionError("leader unreachable")
        answers = await decide_forwarded(
            self.leader, [encode_request(r) for r in requests], writer or ("", None)
        )
        if mode == "lost":
            raise TimeoutError("the answer never came")
        return [decode_result(answer) for answer in answers]


def review_pod(
    profile: str, gpus: int, annotations: Mapping[str, str] | None, node_name: str | None
) -> dict[str, Any]:
    notes = {"accel.dev/profile": profile, **(annotations or {})}
    resources = {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "pytorch:2", "resources": resources}]}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": spec,
        "status": {"phase": "Pending"},
        "metadata": {
            "namespace": "nlp",
            "generateName": "train-",
            "labels": {"team": "nlp", "user": "alice", "job_type": "training"},
            "annotations": notes,
        },
    }


def _affinity_allows(pod: Mapping[str, Any], node: NodeInventory | None) -> bool:
    """kube-scheduler's NodeAffinity filter over the required terms (In on labels only: what accel writes)."""
    if node is None:
        return False
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(node.labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms"
    ) or []
    if not terms:
        return True
    return any(all(node.labels.get(e["key"]) in e.get("values", ()) for e in t.get("matchExpressions") or ()
                   if e.get("operator") == "In") for t in terms)
