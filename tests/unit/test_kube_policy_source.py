"""PolicySource: each ConfigMap version offered once; rejections become Warning Events; watch goes on."""

from __future__ import annotations

import asyncio

import pytest

from kube.fake import FakeCluster
from kube.informer import Informer
from kube.policy_source import PolicyMeta, PolicySource, policy_meta
from kube.testing import RecordingSleep, make_configmap, until


def _policy(data: dict[str, str]) -> dict[str, object]:
    return make_configmap("accel-policy", "accel-system", data)


async def test_accepts_good_rejects_bad_with_event_and_keeps_going() -> None:
    cluster = FakeCluster()
    cluster.apply(_policy({"settings.yaml": "mode: enforce\n"}))
    offered: list[tuple[dict[str, str], PolicyMeta]] = []

    def on_policy(data: dict[str, str], meta: PolicyMeta) -> list[str]:
        offered.append((data, meta))
        return ["teams.yaml: teams[0].quota: expected a mapping"] if "teams.yaml" in data else []

    informer = Informer(
        cluster, "configmaps", namespace="accel-system", name="accel-policy", sleep=RecordingSleep()
    )
    source = PolicySource(informer, on_policy, events=cluster)
    task = asyncio.create_task(informer.run())
    await until(lambda: len(offered) == 1)
    assert offered[0][0] == {"settings.yaml": "mode: enforce\n"} and source.last_errors == []

    cluster.apply(_policy({"settings.yaml": "mode: enforce\n", "teams.yaml": "teams: [{quota: 3}]\n"}))
    await until(lambda: len(offered) == 2)
    await source.drain()
    (event,) = cluster.events
    assert (event["reason"], event["type"]) == ("PolicyRejected", "Warning")
    assert event["message"] == "teams.yaml: teams[0].quota: expected a mapping"
    assert event["involvedObject"]["name"] == "accel-policy"

    cluster.compact()  # relist finds the same version: not offered again
    await until(lambda: informer.relists == 2)
    cluster.apply(make_configmap("unrelated", "accel-system", {}))
    cluster.apply(_policy({"settings.yaml": "mode: warn\n"}))
    await until(lambda: len(offered) == 3)
    assert offered[2][0] == {"settings.yaml": "mode: warn\n"} and source.last_errors == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_callback_exception_is_a_rejection() -> None:
    cluster = FakeCluster()
    informer = Informer(cluster, "configmaps", namespace="accel-system", name="accel-policy")

    def broken(data: dict[str, str], meta: PolicyMeta) -> list[str]:
        raise KeyError("profiles")

    source = PolicySource(informer, broken, events=cluster)
    cluster.apply(_policy({}))
    task = asyncio.create_task(informer.run())
    await until(lambda: bool(source.last_errors))
    await source.drain()
    assert "internal error while validating the policy: KeyError" in cluster.events[0]["message"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("metadata", "who", "when"), [
    pytest.param({"managedFields": [{"manager": "kubectl-client-side-apply", "time": "2025-01-01T00:00:00Z"},
                                    {"manager": "argocd-controller", "time": "2025-02-01T00:00:00Z"}]},
                 "argocd-controller", "2025-02-01T00:00:00Z", id="newest-managed-fields-entry-wins"),
    pytest.param({"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                  "creationTimestamp": "2024-12-24T00:00:00Z"},
                 "kubectl (last-applied)", "2024-12-24T00:00:00Z", id="last-applied-annotation"),
    pytest.param({}, "unknown", None, id="no-provenance"),
])
def test_policy_meta_names_who_and_when(metadata: dict[str, object], who: str, when: str | None) -> None:
    meta = policy_meta(
        {"metadata": {"name": "accel-policy", "namespace": "ns", "resourceVersion": "7", **metadata}}
    )
    assert (meta.changed_by, meta.changed_at, meta.resource_version) == (who, when, "7")
