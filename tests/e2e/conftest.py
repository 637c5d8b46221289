"""E2E fixtures: one cluster per session (see cluster.py for the modes), one namespace per test.

Without a cluster the e2e tests are deselected and ONE line says why, so `make test` and
`make e2e` pass on machines that have neither kind+docker, a KUBECONFIG nor control-plane
binaries. The chosen mode is printed in the header (`make e2e`) and the summary (`make test`).
Everything the session starts is stopped by PID at the end, also when start-up fails half way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import pytest

from tests.e2e import cluster, controlplane
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until
from tests.e2e.proxy import RoundRobinProxy

TARGET = cluster.detect()
PROBE_NS = "e2e-probe"
_deselected: list[pytest.Item] = []


def _is_e2e(item: pytest.Item) -> bool:
    return "tests/e2e/" in str(item.fspath).replace(os.sep, "/")


def pytest_report_header(config: pytest.Config) -> str:
    return TARGET.describe()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_items = [item for item in items if _is_e2e(item)]
    for item in e2e_items:
        item.add_marker(pytest.mark.e2e)
    if TARGET.skip_reason and e2e_items:
        _deselected.extend(e2e_items)
        config.hook.pytest_deselected(items=e2e_items)
        items[:] = [item for item in items if not _is_e2e(item)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _deselected:
        terminalreporter.write_line(f"{TARGET.describe()} ({len(_deselected)} e2e tests not run)")
    else:
        terminalreporter.write_line(TARGET.describe())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # `make e2e` without a cluster: nothing ran on purpose, which is not a failure.
    if _deselected and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def _kubectl_binary() -> str:
    """PATH kubectl if any (it has --subresource etc.), else the one beside the control plane."""
    found = shutil.which("kubectl")
    if found:
        return found
    if TARGET.assets and TARGET.assets.binary("kubectl"):
        return str(TARGET.assets.binary("kubectl"))
    raise controlplane.ControlPlaneError("no kubectl on PATH nor in the control-plane assets")


def _run_cleanup(cleanup: list[Callable[[], object]]) -> None:
    """Newest first; one failing step (an API server already gone) must not skip the others."""
    for stop in reversed(cleanup):
        try:
            stop()
        except Exception as exc:  # teardown reports and goes on
            print(f"e2e teardown: {stop}: {exc}", file=sys.stderr)


@pytest.fixture(scope="session")
def e2e() -> Iterator[cluster.E2ECluster]:
    workdir = cluster.new_workdir()
    cleanup: list[Callable[[], object]] = []
    try:
        control_plane = None
        if TARGET.mode == "local":
            assert TARGET.assets is not None
            procs = controlplane.processes()
            control_plane = controlplane.ControlPlane(TARGET.assets, workdir / "control-plane", procs)
            cleanup.append(procs.stop_all)  # last: the servers go first, then the control plane
            control_plane.start()
            kubectl = Kubectl(kubeconfig=str(control_plane.kubeconfig), binary=_kubectl_binary())
        elif TARGET.mode == "kind":
            kubectl = cluster.kind_kubectl(workdir)
        else:
            kubectl = Kubectl(kubeconfig=os.environ.get("KUBECONFIG"))
        env = cluster.E2ECluster(kubectl=kubectl, target=TARGET, cleanup=cleanup, control_plane=control_plane)
        env.server_minor = cluster.server_minor_version(kubectl)
        if TARGET.out_of_cluster:
            from tests.e2e import outofcluster

            host = "127.0.0.1" if TARGET.mode == "local" else None
            outofcluster.start(env, workdir, host=host)
        else:
            if TARGET.mode == "kind" and not os.environ.get("ACCEL_E2E_IMAGE"):
                cluster.build_and_load_image()
            cluster.deploy_in_cluster(kubectl)
            env.scheduler_running = True
        if TARGET.mode == "local":
            env.gpu_nodes = cluster.create_local_gpu_nodes(kubectl)
        else:
            env.gpu_nodes = cluster.fake_gpu_nodes(kubectl)
        original = kubectl.get("configmap", "accel-policy", namespace=cluster.NS).get("data", {})
        cleanup.append(partial(cluster.apply_policy, kubectl, original))
        cluster.apply_policy(kubectl, cluster.e2e_policy())
        kubectl.apply({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": PROBE_NS, "labels": {"team": "e2e-mutate"}}})  # fmt: skip
        cleanup.append(partial(cluster.delete_quietly, kubectl, "namespace", PROBE_NS))
        ensure_default_service_account(env, PROBE_NS)
        cluster.wait_for_policy(
            kubectl, profile="a100-only", team="e2e-mutate", namespace=PROBE_NS, timeout_s=60
        )
        yield env
    finally:
        _run_cleanup(cleanup)


def ensure_default_service_account(e2e: cluster.E2ECluster, namespace: str) -> None:
    """Pods are refused until their namespace's `default` ServiceAccount exists: wait for the
    controller to make it, or make it when no kube-controller-manager runs (envtest assets)."""
    if e2e.control_plane is not None and e2e.control_plane.controller_manager is None:
        with contextlib.suppress(KubectlError):  # AlreadyExists is fine
            e2e.kubectl.run("create", "serviceaccount", "default", "-n", namespace)
    wait_until(lambda: e2e.kubectl.get("serviceaccount", "default", namespace=namespace), timeout_s=30,
               what=f"ServiceAccount default in {namespace}")  # fmt: skip


@pytest.fixture
def team_namespace(e2e: cluster.E2ECluster) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh namespace labelled with the given team (pods can be created in it at
    once), deleted after the test."""
    created: list[str] = []

    def make(team: str) -> str:
        name = f"{team}-{uuid.uuid4().hex[:6]}"
        e2e.kubectl.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}}
        )
        created.append(name)
        ensure_default_service_account(e2e, name)
        return name

    yield make
    for name in created:
        delete_namespace(e2e, name)


def delete_namespace(e2e: cluster.E2ECluster, name: str) -> None:
    """The namespace in the background (so no controller can make new pods in it), then its pods
    at once and waited for: without kubelets a graceful delete never finishes, and a team's quota
    and the nodes' GPUs must be free for the next test."""
    cluster.delete_quietly(e2e.kubectl, "namespace", name)
    with contextlib.suppress(KubectlError):
        e2e.kubectl.run("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force", "--wait=true",
                        timeout_s=120)  # fmt: skip


@dataclass
class WebhookReplicas:
    """Two `accel serve webhook` processes sharing the ledger, behind a round-robin proxy that the
    webhook configurations point at (out-of-cluster modes; in-cluster the Deployment has 3)."""

    e2e: cluster.E2ECluster
    replicas: list[controlplane.Process]
    proxy: RoundRobinProxy

    def kill(self, index: int) -> None:
        """SIGKILL one replica (no draining: as when its node dies)."""
        process = self.replicas[index]
        process.popen.kill()
        process.popen.wait(timeout=30)


@pytest.fixture
def webhook_replicas(e2e: cluster.E2ECluster) -> Iterator[WebhookReplicas]:
    from tests.e2e import outofcluster

    servers = e2e.servers
    if servers is None:
        pytest.skip("in-cluster mode: the webhook Deployment has its own replicas")
    if servers.host != "127.0.0.1":
        pytest.skip("the replica proxy listens on 127.0.0.1, which this cluster's API server cannot reach")
    second = servers.start("webhook", log_suffix="-replica-2")
    replicas = [servers.running["webhook"], second]
    proxy = RoundRobinProxy([p.port for p in replicas]).start()
    try:
        outofcluster.apply_webhook_configs(
            e2e, servers, url_base=f"https://127.0.0.1:{proxy.port}", cleanup=False
        )
        wait_until(
            partial(_admission_goes_through, e2e, proxy, True),
            timeout_s=30,
            what="webhooks called via the proxy",
        )
        yield WebhookReplicas(e2e, replicas, proxy)
    finally:
        outofcluster.apply_webhook_configs(e2e, servers, url_base=f"https://127.0.0.1:{servers.ports['webhook']}",
                                           cleanup=False)  # fmt: skip
        # The API server picks up a changed configuration asynchronously: keep the proxy until
        # admission no longer goes through it, so the next test never meets a closed port.
        wait_until(partial(_admission_goes_through, e2e, proxy, False), timeout_s=30,
                   what="webhooks called directly again")  # fmt: skip
        proxy.stop()
        servers.procs.stop(second)


def _admission_goes_through(e2e: cluster.E2ECluster, proxy: RoundRobinProxy, via_proxy: bool) -> bool:
    """One server-side dry run of a GPU pod (always sent to the webhooks); did it use the proxy?"""
    before = proxy.forwarded_bytes
    probe = cluster.gpu_pod("probe", team="e2e-mutate", gpus=1, profile="a100-only")
    probe["metadata"]["namespace"] = PROBE_NS
    e2e.kubectl.create(probe, dry_run=True)
    return (proxy.forwarded_bytes > before) == via_proxy
