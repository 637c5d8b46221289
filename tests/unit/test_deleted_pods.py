"""A pod created and deleted between two views frees its quota at once (issue 21 residual).

The watch may deliver a pod's ADDED and DELETED between two inventory rebuilds, so no view ever
shows the pod: before, its reservation then counted until the reconciler's 5 s grace check. The
cluster state now remembers deleted uids (serving.cluster_state rule 5) and `watch_ids` counts
them as gone, in the webhook's admission context and the extender's quota gate alike.
"""

from __future__ import annotations

import asyncio
import types
from fractions import Fraction
from pathlib import Path

from accel.admission.context import build_context
from accel.quota.ledger import Ledger, Reservation
from accel.quota.rules import BOUND_PREFIX, team_usage_now, watch_ids
from cli.serve import ClusterDeps, build_state
from extender.quota_gate import QuotaGate
from kube.fake import FakeCluster
from kube.informer import Backoff, Informer
from kube.testing import ManualClock, make_configmap, make_namespace, make_node, make_pod, until
from serving.cluster_state import DeletedPods
from serving.ledger import LedgerClient
from serving.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
POLICY = {p.name: p.read_text() for p in (ROOT / "examples" / "policy").glob("*.yaml")}
NS = "accel-system"
A100 = "nvidia-a100-80gb"


def test_a_uid_the_watch_showed_deleted_is_accounted_for_though_no_view_showed_it() -> None:
    deleted = frozenset({"gone"})
    visible, seen = watch_ids([("present", False)], {}, now=10.0, keep_s=120.0, deleted=deleted)
    assert {"gone", BOUND_PREFIX + "gone"} <= visible  # its reservation and bind conversion are consumed
    assert "present" in visible and BOUND_PREFIX + "present" not in visible  # a pod that exists stays one
    assert "gone" not in seen  # the cluster state keeps deleted uids; the memo keeps pods it showed
    again, _ = watch_ids([], seen, now=20.0, keep_s=120.0, deleted=deleted)
    assert {"gone", BOUND_PREFIX + "gone", "present", BOUND_PREFIX + "present"} <= again  # present, then gone


def test_a_deleted_uid_that_is_present_again_stays_an_unbound_pod() -> None:
    # uids are never reused; should a view hold one anyway, the pod it shows wins (never freed early)
    visible, seen = watch_ids([("u", False)], {}, now=1.0, keep_s=120.0, deleted=frozenset({"u", "v"}))
    assert seen["u"] == (1.0, False) and "u" in visible and BOUND_PREFIX + "u" not in visible
    assert BOUND_PREFIX + "v" in visible


def gpu_pod(name: str, uid: str) -> dict[str, object]:
    return make_pod(name, "team-nlp", requests={"nvidia.com/gpu": "1"}, uid=uid)


def test_deleted_pods_remembers_gpu_pods_for_keep_s_and_at_most_limit() -> None:
    clock = ManualClock()
    memory = DeletedPods(clock, keep_s=10.0, limit=3)
    memory.on_change("DELETED", gpu_pod("a", "ua"))
    memory.on_change("DELETED", make_pod("plain", "team-nlp", uid="plain"))  # no accelerator: no reservation
    memory.on_change("MODIFIED", gpu_pod("b", "ub"))
    assert memory.uids() == {"ua"}
    clock.advance(6.0)
    memory.on_change("DELETED", gpu_pod("b", "ub"))
    clock.advance(5.0)  # ua went 11 s ago
    assert memory.uids() == {"ub"}
    for uid in ("u1", "u2", "u3"):
        memory.on_change("DELETED", gpu_pod(uid, uid))
    assert memory.uids() == {"u1", "u2", "u3"}  # the oldest beyond the limit is forgotten first


async def test_a_pod_added_and_deleted_between_two_views_frees_its_reservation_at_once() -> None:
    cluster = FakeCluster(controller_namespace=NS)
    for obj in (
        make_namespace(NS),
        make_namespace("team-nlp", labels={"team": "nlp"}),
        make_node("gpu-1", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                  allocatable={"nvidia.com/gpu": "8"}),
        make_configmap("accel-policy", NS, POLICY),
    ):
        cluster.apply(obj)
    deps = ClusterDeps(source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster)
    state = build_state(deps, namespace=NS, policy_files=None, metrics=Metrics(), app_name="test",
                        min_rebuild_interval_s=0.0)
    task = asyncio.create_task(state.run())
    try:
        await until(lambda: state.ready()[0])
        first = state.view()
        assert state.watcher is not None
        version = state.watcher.pods.version
        # admitted (a reservation keyed by its uid), then force-deleted before any rebuild
        cluster.apply(gpu_pod("same", "u1"))
        cluster.delete("pods", "same", "team-nlp")
        await until(lambda: state.watcher is not None and state.watcher.pods.version >= version + 2)
        view = state.view()
        assert view.generation > first.generation and not view.inventory.pods
        held = Reservation("u1", "nlp", A100, Fraction(1), "team-nlp", 0.0, 1e12, name="same")
        ledger = Ledger({"u1": held})

        ctx = build_context(view.parsed, view.inventory, generation=view.generation, now=100.0)
        assert "u1" in ctx.visible
        assert team_usage_now("nlp", ctx.usage, ledger, visible=ctx.visible, now=100.0).get(A100, 0) == 0

        gate = QuotaGate(LedgerClient(cluster), wall=lambda: 100.0)
        _, gate_visible = gate._watch(types.SimpleNamespace(
            parsed=view.parsed, inventory=view.inventory, generation=view.generation))
        assert "u1" in gate_visible
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_pod_gone_at_a_relist_is_remembered_as_deleted() -> None:
    # The watch breaks, the pod is deleted meanwhile (no event reaches anyone), then the relist
    # finds it gone: the informer reports it DELETED, so its reservation is consumed all the same.
    cluster = FakeCluster()
    cluster.apply(gpu_pod("p", "u-relist"))
    informer = Informer(cluster, "pods", backoff=Backoff(initial_s=0.001, max_s=0.001))
    memory = DeletedPods(ManualClock())
    informer.add_callback(memory.on_change)
    task = asyncio.create_task(informer.run())
    try:
        await until(lambda: informer.get("team-nlp/p") is not None)
        relists = informer.relists
        cluster.set_unreachable(True)
        cluster.delete("pods", "p", "team-nlp")
        assert memory.uids() == frozenset()
        cluster.set_unreachable(False)
        for _ in range(2000):  # a real (1 ms) backoff before the relist: poll with a bound
            if informer.relists > relists:
                break
            await asyncio.sleep(0.001)
        assert informer.relists > relists and informer.get("team-nlp/p") is None
        assert memory.uids() == {"u-relist"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
