"""The quota ledger leader (webhook/peer.py, serving/ledger_leader.py) against a real API server.

Two `accel serve webhook --peer-port` replicas elect a leader with the Lease
`accel-quota-ledger-leader`; the other sends the quota step of its admissions to it. Attacks:
- a burst through both replicas: exactly the quota admitted, the follower's decisions made by the
  leader (forwarded, no fallback);
- the leader SIGSTOPped in the middle of a burst sent to the follower: its forwards time out and it
  decides itself, then takes the Lease once it expires; the quota stays exact, also after the old
  leader resumes with whatever it had in flight (its late writes are compare-and-swapped);
- the leader SIGKILLed in the middle of a burst: the same.
Each case has its own team (`e2e-leader-*`, quota LEADER_QUOTA) and parks its pods on a type no
node has, so no binding is involved. Local mode only (the servers run on this host).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.e2e import cluster, controlplane, outofcluster
from tests.e2e.burst import Outcome, burst
from tests.e2e.kubectl import KubectlError, wait_until
from tests.e2e.proxy import RoundRobinProxy

LEASE = "accel-quota-ledger-leader"
QUOTA = cluster.LEADER_QUOTA
TAKEOVER_S = 30.0  # the follower leads within this after the leader stops (lease 4 s + renewals)


@dataclass
class Pair:
    """Two webhook replicas in the ledger leader election (`leader` took the Lease first)."""

    e2e: cluster.E2ECluster
    leader: controlplane.Process
    follower: controlplane.Process
    frozen: list[controlplane.Process] = field(default_factory=list)

    def route_to(self, port: int) -> None:
        """Point both webhook configurations at 127.0.0.1:`port` and wait until a dry run is mutated."""
        assert self.e2e.servers is not None
        outofcluster.apply_webhook_configs(
            self.e2e, self.e2e.servers, url_base=f"https://127.0.0.1:{port}", cleanup=False
        )
        wait_until(lambda: _mutated_dry_run(self.e2e) or None, timeout_s=30, what=f"webhooks at port {port}")


def _metric(process: controlplane.Process, series: str) -> float:
    """One series of `process`'s metrics listener (0 when absent)."""
    url = f"http://127.0.0.1:{process.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback, plain HTTP
        for line in response.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
    return 0.0


def _forwarded(process: controlplane.Process, result: str) -> float:
    return _metric(process, f'accel_quota_ledger_forwarded_total{{result="{result}"}}')


def _holder_pid(e2e: cluster.E2ECluster) -> str | None:
    """The process id in the Lease's holderIdentity (host/pid/n), None when nobody holds it."""
    try:
        lease = e2e.kubectl.get("lease", LEASE, namespace=cluster.NS)
    except KubectlError:
        return None
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    return holder.split("/")[-2] if holder.count("/") >= 2 else None


def _mutated_dry_run(e2e: cluster.E2ECluster) -> bool:
    pod = cluster.gpu_pod("probe", team="e2e-mutate", gpus=1, profile="a100-only")
    from tests.e2e.conftest import PROBE_NS

    pod["metadata"]["namespace"] = PROBE_NS
    with contextlib.suppress(KubectlError):
        annotations = e2e.kubectl.create(pod, dry_run=True)["metadata"].get("annotations", {})
        return any(key.startswith("accel.dev/") and key != "accel.dev/profile" for key in annotations)
    return False


@pytest.fixture
def pair(e2e: cluster.E2ECluster) -> Iterator[Pair]:
    servers = e2e.servers
    if servers is None or e2e.control_plane is None:
        pytest.skip("needs the local control plane with the servers on this host")
    started: list[controlplane.Process] = []
    found: Pair | None = None
    try:
        leader = servers.start("webhook", log_suffix="-leader-a", args=outofcluster.peer_args(servers))
        started.append(leader)
        wait_until(lambda: _holder_pid(e2e) == str(leader.pid) or None, timeout_s=30,
                   what="the first replica holds the ledger leader Lease")  # fmt: skip
        follower = servers.start("webhook", log_suffix="-leader-b", args=outofcluster.peer_args(servers))
        started.append(follower)
        found = Pair(e2e, leader, follower)
        yield found
    finally:
        for process in found.frozen if found is not None else []:  # a stopped process cannot take SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        try:
            outofcluster.apply_webhook_configs(
                e2e, servers, url_base=f"https://127.0.0.1:{servers.ports['webhook']}", cleanup=False
            )
        finally:
            for process in started:
                servers.procs.stop(process)


def _pods(team: str, ns: str, prefix: str, count: int) -> list[cluster.Obj]:
    out = []
    for i in range(count):
        pod = cluster.gpu_pod(f"{prefix}-{i}", team=team, gpus=1, profile=cluster.PARKED_PROFILE)
        pod["metadata"]["namespace"] = ns
        out.append(pod)
    return out


def _stored(e2e: cluster.E2ECluster, ns: str) -> int:
    return len(e2e.kubectl.get("pods", namespace=ns)["items"])


def _exact(e2e: cluster.E2ECluster, ns: str, outcomes: list[Outcome]) -> None:
    kinds = Counter(o.kind for o in outcomes)
    errors = [o.detail for o in outcomes if o.kind == "error"]
    assert not errors, f"{len(errors)} creates failed, not for quota: {errors[:3]}"
    assert kinds["admitted"] == QUOTA, dict(kinds)
    assert _stored(e2e, ns) == QUOTA


def test_a_burst_through_both_replicas_is_decided_by_the_leader_and_exact(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], pair: Pair
) -> None:
    team = "e2e-leader-burst"
    ns = team_namespace(team)
    proxy = RoundRobinProxy([pair.leader.port, pair.follower.port]).start()
    try:
        pair.route_to(proxy.port)
        outcomes = burst(e2e, _pods(team, ns, "burst", QUOTA * 3), workers=16)
    finally:
        pair.route_to(pair.leader.port)
        proxy.stop()
    _exact(e2e, ns, outcomes)
    assert _forwarded(pair.follower, "decided") > 0  # the follower's quota steps went to the leader
    assert _forwarded(pair.follower, "fallback") == 0
    assert _metric(pair.leader, 'accel_quota_ledger_leader{ledger="accel-quota-ledger"}') == 1


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_leader_lost_mid_burst_leaves_quota_exact_and_the_follower_takes_over(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], pair: Pair, how: str
) -> None:
    team = f"e2e-leader-{how}"
    ns = team_namespace(team)
    pair.route_to(pair.follower.port)  # every admission at the follower; the leader only decides quota
    before = burst(e2e, _pods(team, ns, "before", 3), workers=3)
    assert [o.kind for o in before] == ["admitted"] * 3
    forwarded = _forwarded(pair.follower, "decided")
    assert forwarded >= 3  # decided by the leader

    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(burst, e2e, _pods(team, ns, "during", QUOTA * 3), workers=4)
        # Stop the leader as soon as it has decided some of this burst (or the burst is over).
        wait_until(lambda: _forwarded(pair.follower, "decided") > forwarded or running.done() or None,
                   timeout_s=60, interval_s=0.005, what="the leader deciding part of the burst")  # fmt: skip
        mid_burst = not running.done()
        if how == "stop":
            os.kill(pair.leader.pid, signal.SIGSTOP)
            pair.frozen.append(pair.leader)
        else:
            pair.leader.popen.kill()
            pair.leader.popen.wait(timeout=30)
        during = running.result(timeout=300)
    _exact(e2e, ns, before + during)
    if mid_burst:  # forwards to the lost leader failed: the follower decided those itself
        assert _forwarded(pair.follower, "fallback") >= 1

    started = time.monotonic()
    wait_until(lambda: _holder_pid(e2e) == str(pair.follower.pid) or None, timeout_s=TAKEOVER_S,
               what="the follower holding the ledger leader Lease")  # fmt: skip
    assert time.monotonic() - started < TAKEOVER_S
    after = burst(e2e, _pods(team, ns, "after", 3), workers=3)  # the new leader decides alone
    assert [o.kind for o in after] == ["quota"] * 3, [o.detail for o in after]

    if how == "stop":  # resumed: it follows, and what it had in flight changed nothing
        os.kill(pair.leader.pid, signal.SIGCONT)
        pair.frozen.remove(pair.leader)
        wait_until(lambda: _metric(pair.leader, 'accel_quota_ledger_leader{ledger="accel-quota-ledger"}') == 0
                   or None, timeout_s=30, what="the resumed replica no longer leading")  # fmt: skip
        proxy = RoundRobinProxy([pair.leader.port, pair.follower.port]).start()
        try:
            pair.route_to(proxy.port)
            resumed = burst(e2e, _pods(team, ns, "resumed", 6), workers=6)
        finally:
            pair.route_to(pair.follower.port)
            proxy.stop()
        assert [o.kind for o in resumed] == ["quota"] * 6, [o.detail for o in resumed]
    assert _stored(e2e, ns) == QUOTA
