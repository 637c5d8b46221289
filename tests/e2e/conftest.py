"""E2E fixtures: one cluster per session (see cluster.py for the modes), one namespace per test.

Without a cluster every test under tests/e2e is skipped with one message, so `make test` and
`make e2e` pass on machines that have neither kind+docker nor a KUBECONFIG.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import Kubectl

TARGET = cluster.detect()
PROBE_NS = "e2e-probe"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_items = [item for item in items if "tests/e2e/" in str(item.fspath).replace(os.sep, "/")]
    for item in e2e_items:
        item.add_marker(pytest.mark.e2e)
        if TARGET.skip_reason:
            item.add_marker(pytest.mark.skip(reason=TARGET.skip_reason))


@pytest.fixture(scope="session")
def e2e() -> Iterator[cluster.E2ECluster]:
    workdir = cluster.new_workdir()
    if TARGET.mode == "kind":
        kubectl = cluster.kind_kubectl(workdir)
    else:
        kubectl = Kubectl(kubeconfig=os.environ.get("KUBECONFIG"))
    env = cluster.E2ECluster(kubectl=kubectl, target=TARGET)
    if TARGET.out_of_cluster:
        from tests.e2e import outofcluster

        outofcluster.start(env, workdir)
    else:
        if TARGET.mode == "kind" and not os.environ.get("ACCEL_E2E_IMAGE"):
            cluster.build_and_load_image()
        cluster.deploy_in_cluster(kubectl)
        env.scheduler_running = True
    env.gpu_nodes = cluster.fake_gpu_nodes(kubectl)
    original = kubectl.get("configmap", "accel-policy", namespace=cluster.NS).get("data", {})
    cluster.apply_policy(kubectl, cluster.e2e_policy())
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": PROBE_NS, "labels": {"team": "e2e-mutate"}}})  # fmt: skip
    cluster.wait_for_policy(kubectl, profile="a100-only", team="e2e-mutate", namespace=PROBE_NS, timeout_s=60)
    try:
        yield env
    finally:
        cluster.apply_policy(kubectl, original)
        cluster.delete_quietly(kubectl, "namespace", PROBE_NS)
        for stop in reversed(env.cleanup):
            stop()


@pytest.fixture
def team_namespace(e2e: cluster.E2ECluster) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh namespace labelled with the given team, deleted after the test."""
    created: list[str] = []

    def make(team: str) -> str:
        name = f"{team}-{uuid.uuid4().hex[:6]}"
        e2e.kubectl.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}}
        )
        created.append(name)
        return name

    yield make
    for name in created:
        cluster.delete_quietly(e2e.kubectl, "namespace", name)
