"""ClusterState: the last good policy stays, every change is audited, views follow the watches."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from accel.cluster.catalog import load_builtin_catalog
from cli.serve import ClusterDeps, build_state
from kube.fake import FakeCluster
from kube.testing import make_configmap, make_namespace, make_node, make_pod, until
from serving.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
POLICY = {p.name: p.read_text() for p in (ROOT / "examples" / "policy").glob("*.yaml")}
NS = "accel-system"


def deps(cluster: FakeCluster) -> ClusterDeps:
    return ClusterDeps(source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster)


def h100_node(name: str) -> dict[str, object]:
    return make_node(
        name,
        labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        allocatable={"nvidia.com/gpu": "8", "cpu": "64"},
    )


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster(controller_namespace=NS)
    fake.apply(make_namespace(NS))
    fake.apply(make_namespace("team-nlp", labels={"team": "nlp"}))
    fake.apply(h100_node("gpu-1"))
    return fake


async def test_view_follows_the_watch_and_policy_from_the_configmap(cluster: FakeCluster) -> None:
    cluster.apply(make_configmap("accel-policy", NS, POLICY))
    state = build_state(
        deps(cluster),
        namespace=NS,
        policy_files=None,
        metrics=Metrics(),
        app_name="test",
        min_rebuild_interval_s=0.0,
    )
    task = asyncio.create_task(state.run())
    try:
        await until(lambda: state.ready()[0])
        assert state.view().parsed.policy.profile("large-any") is not None
        assert [n.name for n in state.view().inventory.nodes] == ["gpu-1"]
        cluster.apply(make_pod("p", "team-nlp", node="gpu-1", requests={"nvidia.com/gpu": "2"}, uid="u1"))
        await until(lambda: state.view().inventory.node("gpu-1").allocated.get("nvidia.com/gpu") == 2)
        first = state.view().generation
        assert state.view().generation == first  # unchanged watches: cached view
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_broken_policy_keeps_the_last_good_one_with_event_metric_and_audit(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.apply(make_configmap("accel-policy", NS, POLICY))
    metrics = Metrics()
    state = build_state(deps(cluster), namespace=NS, policy_files=None, metrics=metrics, app_name="test")
    task = asyncio.create_task(state.run())
    caplog.set_level(logging.INFO, logger="accel.audit.policy")
    try:
        await until(lambda: state.ready()[0])
        broken = make_configmap(
            "accel-policy", NS, {**POLICY, "teams.yaml": "teams:\n- name: x\n  quota: {nope-gpu-1gb: 1}\n"}
        )
        broken["metadata"]["managedFields"] = [
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-25T10:00:00Z"}
        ]
        cluster.apply(broken)
        await until(lambda: len(state.history) >= 2)
        await state.policy_source.drain()  # type: ignore[union-attr]
        assert state.view().parsed.policy.team("nlp") is not None  # last good policy still in force
        change = state.history[-1]
        assert not change.accepted and change.manager == "kubectl-edit"
        assert "teams.yaml: teams[0].quota.nope-gpu-1gb: unknown accelerator type" in change.errors[0]
        assert "+  quota: {nope-gpu-1gb: 1}" in change.diff
        assert any(e.get("reason") == "PolicyRejected" for e in cluster.events)
        assert metrics.policy_reload.labels(result="invalid")._value.get() == 1
        audit = [r for r in caplog.records if r.name == "accel.audit.policy"]
        assert (
            audit and audit[-1].__dict__["who"] == "kubectl-edit" and audit[-1].__dict__["accepted"] is False
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_not_ready_without_a_valid_policy(cluster: FakeCluster) -> None:
    cluster.apply(make_configmap("accel-policy", NS, {"settings.yaml": "mode: yolo\n"}))
    state = build_state(deps(cluster), namespace=NS, policy_files=None, metrics=Metrics(), app_name="test")
    task = asyncio.create_task(state.run())
    try:
        await until(lambda: bool(state.history))
        ready, reason = state.ready()
        assert not ready and "no valid policy" in reason
        with pytest.raises(RuntimeError, match="no valid policy loaded yet"):
            state.view()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_fixed_policy_files_are_used_as_given(cluster: FakeCluster) -> None:
    state = build_state(deps(cluster), namespace=NS, policy_files=POLICY, metrics=Metrics(), app_name="test")
    assert state.history[-1].accepted and state.policy_source is None
    assert json.dumps(sorted(state.catalog.names())) == json.dumps(sorted(load_builtin_catalog().names()))


def test_first_policy_is_logged_as_a_summary_and_changes_as_diffs(caplog: pytest.LogCaptureFixture) -> None:
    """Start-up says how much policy was loaded, not the whole policy as a one-line diff."""
    from kube.policy_source import PolicyMeta
    from serving.cluster_state import ClusterState

    caplog.set_level(logging.INFO)
    state = ClusterState(catalog=load_builtin_catalog(), namespace=NS)
    state.apply_policy(dict(POLICY), PolicyMeta("1", "kubectl", None, "accel-policy", NS))
    (loaded,) = [r.__dict__ for r in caplog.records if r.getMessage() == "policy loaded"]
    assert (loaded["profiles"], loaded["teams"], loaded["mode"]) == (8, 4, "enforce")
    (first,) = [r.__dict__ for r in caplog.records if r.name == "accel.audit.policy"]
    assert "diff" not in first and first["accepted"] is True
    caplog.clear()
    state.apply_policy(
        {**POLICY, "settings.yaml": POLICY["settings.yaml"].replace("mode: enforce", "mode: warn")},
        PolicyMeta("2", "kubectl", None, "accel-policy", NS),
    )
    (change,) = [r.__dict__ for r in caplog.records if r.name == "accel.audit.policy"]
    assert "+mode: warn" in change["diff"]
    assert not [r for r in caplog.records if r.getMessage() == "policy loaded"]


def test_a_rejected_first_policy_does_not_claim_one_is_in_force(caplog: pytest.LogCaptureFixture) -> None:
    from kube.policy_source import PolicyMeta
    from serving.cluster_state import ClusterState

    state = ClusterState(catalog=load_builtin_catalog(), namespace=NS)
    state.apply_policy(
        {"teams.yaml": "teams:\n- name: x\n  quota: {nope-gpu-1gb: 1}\n"},
        PolicyMeta("1", "kubectl", None, "accel-policy", NS),
    )
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert messages and "no valid policy loaded yet" in messages[0] and "in force" not in messages[0]
    with pytest.raises(RuntimeError, match="accel policy validate") as caught:
        state.view()
    assert "ready()" not in str(caught.value)
