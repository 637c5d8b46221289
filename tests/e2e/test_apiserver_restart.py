"""kube-apiserver stopped and started again (same etcd, same port) during a stream of creates.

The accel servers are not restarted: their /readyz must say 503 while they cannot watch (after
`api.maxStalenessSeconds`), 200 again once their watches recover by themselves, and afterwards
they must act on what they watch: the quota counts every pod admitted before, during and after
the outage exactly once, a policy change takes effect, and a GPU pod is bound by the extender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.burst import Outcome, create_one
from tests.e2e.kubectl import wait_until

QUOTA = 4  # team e2e-restart in cluster.e2e_policy()
PACE_S = 0.2  # between two creates of the stream (pacing, not synchronisation)
NOT_READY_WITHIN_S = cluster.API_STALENESS_S + 30
READY_AGAIN_WITHIN_S = 90


class CreateStream:
    """Creates parked 1-GPU pods one after another in a thread until stopped."""

    def __init__(self, e2e: cluster.E2ECluster, namespace: str) -> None:
        self.e2e, self.namespace = e2e, namespace
        self.outcomes: list[Outcome] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            pod = cluster.gpu_pod(f"stream-{i}", team="e2e-restart", gpus=1, profile=cluster.PARKED_PROFILE)
            pod["metadata"]["namespace"] = self.namespace
            self.outcomes.append(create_one(self.e2e, pod))
            i += 1
            self.stopped.wait(PACE_S)

    def count(self, kind: str) -> int:
        return sum(1 for o in list(self.outcomes) if o.kind == kind)


@pytest.fixture
def stream(e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]) -> Iterator[CreateStream]:
    running = CreateStream(e2e, team_namespace("e2e-restart"))
    running.thread.start()
    try:
        yield running
    finally:
        running.stopped.set()
        running.thread.join(timeout=120)


def _readyz(e2e: cluster.E2ECluster) -> dict[str, int]:
    """HTTP status of each server's /readyz (0: no answer at all)."""
    import urllib.error
    import urllib.request

    assert e2e.servers is not None
    statuses = {}
    for name, port in e2e.servers.ports.items():
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=e2e.servers.tls_context(),
                                        timeout=5) as response:  # fmt: skip
                statuses[name] = int(response.status)
        except urllib.error.HTTPError as exc:
            statuses[name] = int(exc.code)
        except OSError:
            statuses[name] = 0
    return statuses


def _with_a100_price(price: float) -> dict[str, str]:
    data = cluster.e2e_policy()
    profiles = yaml.safe_load(data["profiles.yaml"])
    next(p for p in profiles["profiles"] if p["name"] == "a100-only")["costPerGpuHour"] = price
    return data | {"profiles.yaml": yaml.safe_dump(profiles)}


def test_servers_ride_out_an_apiserver_restart(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], stream: CreateStream
) -> None:
    if e2e.control_plane is None or e2e.servers is None:
        pytest.skip("needs the local control plane (its kube-apiserver is stopped and started)")
    servers = [*e2e.servers.running.values()]
    assert set(_readyz(e2e).values()) == {200}, _readyz(e2e)
    wait_until(lambda: stream.count("admitted") >= 1, timeout_s=30, what="a first pod of the stream admitted")

    e2e.control_plane.stop_apiserver()
    try:
        wait_until(lambda: set(_readyz(e2e).values()) == {503}, timeout_s=NOT_READY_WITHIN_S,
                   what="every server's /readyz 503 while it cannot watch")  # fmt: skip
    finally:
        e2e.control_plane.start_apiserver()
    wait_until(lambda: set(_readyz(e2e).values()) == {200}, timeout_s=READY_AGAIN_WITHIN_S,
               what="every server's /readyz 200 again, without a restart")  # fmt: skip
    assert all(process.running() for process in servers), "the servers recovered by themselves"

    # The quota counted every pod exactly once across the outage: the stream runs into it.
    wait_until(lambda: stream.count("quota") >= 2, timeout_s=60, what="the stream reaching the quota")
    stream.stopped.set()
    stream.thread.join(timeout=120)
    existing = e2e.kubectl.get("pods", namespace=stream.namespace)["items"]
    assert len(existing) == stream.count("admitted") == QUOTA, (
        f"{len(existing)} pods exist, {stream.count('admitted')} admitted, quota {QUOTA}: "
        f"{[o.detail for o in stream.outcomes if o.kind == 'error'][-3:]}"
    )

    # The policy watch recovered: a change takes effect (then the suite's policy again).
    ns = team_namespace("e2e-reload")
    probe = cluster.gpu_pod("price", team="e2e-reload", gpus=1, profile="a100-only")
    probe["metadata"]["namespace"] = ns

    def price() -> float:
        return float(
            e2e.kubectl.create(probe, dry_run=True)["metadata"]["annotations"]["accel.dev/gpu-hour-price"]
        )

    try:
        cluster.apply_policy(e2e.kubectl, _with_a100_price(5.5))
        wait_until(
            lambda: price() == pytest.approx(5.5), timeout_s=30, what="a policy change after the restart"
        )
    finally:
        cluster.apply_policy(e2e.kubectl, cluster.e2e_policy())

    # The extender's and the scheduler's watches recovered: a GPU pod is bound with its type.
    if e2e.scheduler_running:
        ns = team_namespace("e2e-workload")
        pod = cluster.gpu_pod("after-restart", team="e2e-workload", gpus=1, profile="a100-only")
        pod["metadata"]["namespace"] = ns
        e2e.kubectl.create(pod)
        bound = wait_until(
            lambda: (
                (p := e2e.kubectl.get("pod", "after-restart", namespace=ns))["spec"].get("nodeName") and p
            ),
            timeout_s=60,
            what="a GPU pod bound after the restart",
        )
        assert bound["metadata"]["annotations"]["accelerator.opendatahub.io/type"] == "nvidia-a100-80gb"
