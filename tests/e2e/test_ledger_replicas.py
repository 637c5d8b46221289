"""The quota ledger's watermark retention (accel.quota.rules invariant 6) against a real API server.

Each webhook replica registers its pod watch's resourceVersion in the ledger; an entry leaves the
document once every live writer's watch has passed its stamp, raising the `floor`, and no decision
is made from a snapshot behind the floor. These cases attack that with real processes:
- a replica frozen (SIGSTOP) longer than the old 30 s settle time while the other admits and
  deletes: resumed, it must neither over-admit from its stale view nor deny forever from it;
- a replica restarted (a new writer): the old registration lapses, nothing is over-admitted,
  admission resumes and the document empties;
- hand-edited documents: a corrupt one, one of the format before watermarks, and one whose floor
  is past every watch (a ledger restored from another cluster, whose resourceVersions are larger).
Each case has its own team (`e2e-ledger-*` in `cluster.e2e_policy()`, quota 4 GPUs) and parks its
pods on a type no node has, so no binding (and no extender entry) is involved.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from accel.quota.ledger import WRITER_LIVE_S
from accel.quota.rules import SETTLE_S
from tests.e2e import cluster, controlplane
from tests.e2e.conftest import PROBE_NS
from tests.e2e.kubectl import KubectlError, wait_until

QUOTA = 4  # every e2e-ledger-* team: "*": 4
FREEZE_S = SETTLE_S + 5  # longer than the old rule kept a consumed entry
ANSWER_S = 30.0  # a resumed or restarted replica answers properly within this (its watch catches up)
LAPSE_S = WRITER_LIVE_S + 15.0  # a dead writer leaves the document within this (heartbeats of the others)
LEDGER = "accel-quota-ledger"


@dataclass
class Replicas:
    """Webhook replicas this module started, and where the webhook configurations point."""

    e2e: cluster.E2ECluster
    started: list[controlplane.Process] = field(default_factory=list)
    frozen: list[controlplane.Process] = field(default_factory=list)

    @property
    def main(self) -> controlplane.Process:
        return self.e2e.servers.running["webhook"]

    def start(self, suffix: str, port: int | None = None) -> controlplane.Process:
        process = self.e2e.servers.start("webhook", port, log_suffix=f"-ledger-{suffix}")
        self.started.append(process)
        return process

    def freeze(self, process: controlplane.Process) -> None:
        self.frozen.append(process)
        os.kill(process.pid, signal.SIGSTOP)

    def resume(self, process: controlplane.Process) -> None:
        os.kill(process.pid, signal.SIGCONT)
        self.frozen.remove(process)

    def kill(self, process: controlplane.Process) -> None:
        process.popen.kill()
        process.popen.wait(timeout=30)

    def route_validation_to(self, process: controlplane.Process) -> None:
        """Point only the validating webhook (the quota decision) at `process`, the mutating one at
        the main replica, without waiting (`process` may be stopped)."""
        from tests.e2e import outofcluster

        servers = self.e2e.servers
        for port, kind in ((self.main.port, "MutatingWebhookConfiguration"),
                           (process.port, "ValidatingWebhookConfiguration")):  # fmt: skip
            for obj in outofcluster.webhook_configs(
                self.e2e, f"https://127.0.0.1:{port}", servers.ca.read_bytes(),
                strip_match_conditions=servers.match_conditions_stripped,
            ):
                if obj["kind"] == kind:
                    self.e2e.kubectl.apply(obj)

    def route_to(self, process: controlplane.Process) -> None:
        """Point both webhook configurations at `process` alone and wait until the API server calls it."""
        from tests.e2e import outofcluster

        outofcluster.apply_webhook_configs(
            self.e2e, self.e2e.servers, url_base=f"https://127.0.0.1:{process.port}", cleanup=False
        )
        wait_until(lambda: _probe_reaches(self.e2e, process), timeout_s=30,
                   what=f"webhooks called at {process.name}")  # fmt: skip


@pytest.fixture
def replicas(e2e: cluster.E2ECluster) -> Iterator[Replicas]:
    servers = e2e.servers
    if servers is None or e2e.control_plane is None:
        pytest.skip("needs the local control plane with the servers on this host")
    found = Replicas(e2e)
    try:
        yield found
    finally:
        for process in list(found.frozen):  # a stopped process cannot even take SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        try:
            found.route_to(found.main)
        finally:
            for process in found.started:
                servers.procs.stop(process)


def _served(process: controlplane.Process) -> float:
    """Admission requests (mutate + validate) `process` has answered (its metrics listener)."""
    url = f"http://127.0.0.1:{process.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback, plain HTTP
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("accel_http_requests_total{") and ("mutate" in line or "validate" in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _probe_reaches(e2e: cluster.E2ECluster, process: controlplane.Process) -> bool:
    """Does a server-side dry run of a GPU pod reach `process` (whatever it answers)?"""
    before = _served(process)
    probe = cluster.gpu_pod("probe", team="e2e-mutate", gpus=1, profile="a100-only")
    probe["metadata"]["namespace"] = PROBE_NS
    with contextlib.suppress(KubectlError):
        e2e.kubectl.create(probe, dry_run=True)
    return _served(process) > before


def _create(e2e: cluster.E2ECluster, ns: str, name: str, team: str) -> tuple[str, str]:
    """("admitted" | "quota" (denied: quota exceeded) | "other", message) of one GPU pod create."""
    pod = cluster.gpu_pod(name, team=team, gpus=1, profile=cluster.PARKED_PROFILE)
    pod["metadata"]["namespace"] = ns
    assert e2e.control_plane is not None
    try:
        status, body = e2e.control_plane.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    except OSError as exc:
        return "other", f"API server unreachable: {exc}"
    if status == 201:
        return "admitted", ""
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    if status == 409:  # an earlier try of this name was admitted after all (its answer was lost)
        return "admitted", message
    return ("quota" if f'team "{team}" would use' in message else "other"), message


def _fill(
    e2e: cluster.E2ECluster, ns: str, team: str, prefix: str, *, timeout_s: float = ANSWER_S
) -> list[str]:
    """Create pods `prefix-0, -1, ...` until one is denied for quota; a transient refusal
    (quota-unavailable while a watch catches up, a webhook call failing) is retried until the
    deadline. Returns the names admitted."""
    admitted: list[str] = []
    transient: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        name = f"{prefix}-{len(admitted)}"
        kind, message = _create(e2e, ns, name, team)
        if kind == "admitted":
            admitted.append(name)
            assert len(admitted) <= QUOTA + 1, f"runaway admission: {admitted}"
        elif kind == "quota":
            return admitted
        else:
            transient.append(message[:200])
            time.sleep(0.3)  # pacing between retries of a refused create, not synchronisation
    raise AssertionError(
        f"no quota verdict within {timeout_s}s; admitted {admitted}; last refusals {transient[-3:]}"
    )


def _pod_names(e2e: cluster.E2ECluster, ns: str) -> set[str]:
    return {p["metadata"]["name"] for p in e2e.kubectl.get("pods", namespace=ns)["items"]}


def _uids(e2e: cluster.E2ECluster, ns: str) -> set[str]:
    return {p["metadata"]["uid"] for p in e2e.kubectl.get("pods", namespace=ns)["items"]}


def _delete(e2e: cluster.E2ECluster, ns: str, *names: str) -> None:
    e2e.kubectl.run("delete", "pod", *names, "-n", ns, "--grace-period=0", "--force", "--wait=true")


def _document(e2e: cluster.E2ECluster) -> dict[str, Any]:
    found = e2e.kubectl.get("configmap", LEDGER, namespace=cluster.NS)
    return json.loads((found.get("data") or {}).get("ledger.json") or '{"reservations": {}}')


def _write_document(e2e: cluster.E2ECluster, text: str) -> None:
    """Overwrite the ledger as an admin's hand edit would (no compare-and-swap)."""
    patch = json.dumps({"data": {"ledger.json": text}})
    e2e.kubectl.run("patch", "configmap", LEDGER, "-n", cluster.NS, "--type=merge", "-p", patch)


def _writer_pids(document: dict[str, Any]) -> set[str]:
    """Process ids of the registered writers (names are host/pid/n)."""
    return {name.split("/")[-2] for name in (document.get("writers") or {}) if name.count("/") >= 2}


def test_a_replica_frozen_past_the_old_settle_time_neither_over_admits_nor_denies_forever(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], replicas: Replicas
) -> None:
    team = "e2e-ledger-freeze"
    ns = team_namespace(team)
    frozen = _writer_with_pods(e2e, replicas, "frozen", ns, team, "before")  # its watch shows these two
    wait_until(lambda: not _uids(e2e, ns) & set(_document(e2e)["reservations"]), timeout_s=15,
               what="both entries consumed by every watch")  # fmt: skip
    replicas.route_to(replicas.main)

    served_before = _served(frozen)
    replicas.freeze(frozen)
    started = time.monotonic()
    # Through the other replica: the two pods the frozen one saw go, three new ones come (3 of 4 used).
    # Frozen, it would count 2 + 0 (over-admitting 2) if it decided on its view without the entries.
    _delete(e2e, ns, "before-0", "before-1")
    created = _fill_exactly(e2e, ns, team, "during", 3)
    new_uids = _uids(e2e, ns)
    assert _pod_names(e2e, ns) == set(created)

    def dropped_past_the_frozen_writer() -> bool:
        document = _document(e2e)
        return (
            time.monotonic() - started >= FREEZE_S
            and str(frozen.pid) not in _writer_pids(document)
            and not new_uids & set(document["reservations"])
            and int(document.get("floor", 0)) > 0
        )

    # The attack's premise: the frozen writer lapsed and the new pods' entries left the document.
    wait_until(dropped_past_the_frozen_writer, timeout_s=FREEZE_S + 30, interval_s=1,
               what="the frozen writer lapsed and the new entries dropped")  # fmt: skip
    # The sharpest moment: quota decisions already waiting in the frozen replica's socket when it
    # resumes, next to its watch's backlog. Its view may still be the stale one (2 used, the new
    # pods' entries gone): those decisions must be refused as behind, not admitted.
    replicas.route_validation_to(frozen)
    raced = _race_into_frozen(e2e, ns, team, frozen)
    replicas.resume(frozen)
    outcomes = [future.result(timeout=60) for future in raced]
    assert len(_pod_names(e2e, ns)) <= QUOTA, f"over-admission on resume: {outcomes}"
    replicas.route_to(frozen)

    admitted = _fill(e2e, ns, team, "after")
    assert _served(frozen) > served_before
    in_use = len(_pod_names(e2e, ns))
    assert in_use == QUOTA, f"{in_use} pods for a quota of {QUOTA}; raced {outcomes}, then {admitted}"


def _buffered_requests(port: int) -> bool:
    """Whether an established connection to `port` has unread bytes (a request waiting for a stopped
    process): /proc/net/tcp's rx_queue of the listener's accepted sockets."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                rx_queue = int(fields[4].split(":")[1], 16)
                if local_port == port and fields[3] == "01" and rx_queue > 0:
                    return True
    return False


def _race_into_frozen(
    e2e: cluster.E2ECluster, ns: str, team: str, frozen: controlplane.Process
) -> list[Future[tuple[str, str]]]:
    """Creates whose validation waits in the frozen replica's socket. The API server picks up the
    re-pointed configuration asynchronously: creates answered meanwhile (by the other replica,
    correctly) are replaced by new ones until one waits at the frozen replica."""
    pool = ThreadPoolExecutor(max_workers=2)
    futures: list[Future[tuple[str, str]]] = []
    deadline = time.monotonic() + 30
    while not _buffered_requests(frozen.port):
        assert time.monotonic() < deadline, "no admission request reached the frozen replica"
        if all(f.done() for f in futures[-2:]):
            futures += [pool.submit(_create, e2e, ns, f"race-{len(futures) + i}", team) for i in range(2)]
        time.sleep(0.1)  # polling the socket table
    pool.shutdown(wait=False)
    return futures


def _fill_exactly(e2e: cluster.E2ECluster, ns: str, team: str, prefix: str, count: int) -> list[str]:
    """Create `count` pods that must all be admitted (a transient refusal is retried)."""
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        wait_until(lambda name=name: _create(e2e, ns, name, team)[0] == "admitted", timeout_s=ANSWER_S,
                   what=f"{name} admitted")  # fmt: skip
    return names


def _writer_with_pods(
    e2e: cluster.E2ECluster, replicas: Replicas, suffix: str, ns: str, team: str, prefix: str
) -> controlplane.Process:
    """A new replica, the only webhook, that admitted two pods and registered as a ledger writer."""
    replica = replicas.start(suffix)
    replicas.route_to(replica)
    _fill_exactly(e2e, ns, team, prefix, 2)
    wait_until(lambda: str(replica.pid) in _writer_pids(_document(e2e)), timeout_s=15,
               what="the replica registered as a ledger writer")  # fmt: skip
    return replica


def test_a_restarted_replica_is_a_new_writer_and_the_old_one_lapses(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], replicas: Replicas
) -> None:
    team = "e2e-ledger-restart"
    ns = team_namespace(team)
    first = _writer_with_pods(e2e, replicas, "first", ns, team, "old")
    replicas.kill(first)  # SIGKILL: no goodbye, its registration stays until it lapses
    second = replicas.start("second", first.port)  # same address: the configurations are unchanged

    admitted = _fill(e2e, ns, team, "new")
    assert len(admitted) == 2, f"2 of {QUOTA} in use: exactly two more may be admitted, got {admitted}"
    assert len(_pod_names(e2e, ns)) == QUOTA
    uids = _uids(e2e, ns)

    def lapsed_and_tidy() -> bool:
        document = _document(e2e)
        return str(first.pid) not in _writer_pids(document) and not uids & set(document["reservations"])

    wait_until(lapsed_and_tidy, timeout_s=LAPSE_S, interval_s=1,
               what="the killed writer gone from the ledger and every entry of the team dropped")  # fmt: skip
    assert str(second.pid) in _writer_pids(_document(e2e))


def _wait_settled(e2e: cluster.E2ECluster, ns: str) -> None:
    """Until no entry of the namespace's pods is left: every live writer's watch shows them all."""
    uids = _uids(e2e, ns)
    wait_until(lambda: not uids & set(_document(e2e)["reservations"]), timeout_s=15,
               what="every entry of the namespace consumed by every watch")  # fmt: skip


def test_a_corrupt_or_old_format_document_never_frees_quota_and_is_rewritten(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], replicas: Replicas
) -> None:
    team = "e2e-ledger-corrupt"
    ns = team_namespace(team)
    assert len(_fill(e2e, ns, team, "full")) == QUOTA
    # An edit wipes the entries of admissions still in flight (not yet in a watch): those can be
    # admitted again, by design (accel.quota.ledger `Ledger.from_data`). Past that, nothing is freed.
    _wait_settled(e2e, ns)
    _write_document(e2e, '{"reservations": {"x": {"team": 1')  # truncated: an editor's accident
    assert _fill(e2e, ns, team, "over") == [], "the watch still counts every pod"
    _delete(e2e, ns, "full-0")
    _fill_exactly(e2e, ns, team, "again", 1)  # freed once the watch shows the delete
    assert _fill(e2e, ns, team, "more") == []
    wait_until(lambda: "reservations" in _document(e2e), timeout_s=15, what="the ledger rewritten")

    # The format before watermarks (as a replica of the previous version writes it): read, upgraded.
    _wait_settled(e2e, ns)
    _write_document(e2e, json.dumps({"reservations": {}}))
    assert _fill(e2e, ns, team, "old-format") == []
    _delete(e2e, ns, "full-1")
    _fill_exactly(e2e, ns, team, "upgraded", 1)
    wait_until(lambda: _document(e2e).get("writers"), timeout_s=15, what="writers registered again")


def test_a_floor_past_every_watch_does_not_wedge_admission(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], replicas: Replicas
) -> None:
    """A ledger restored from another cluster (or hand-edited) can carry a floor larger than any
    resourceVersion of this API server: no watch ever reaches it. A legitimate floor is always
    below the document's own resourceVersion (it is a watermark seen before the write)."""
    team = "e2e-ledger-floor"
    ns = team_namespace(team)
    assert _fill_exactly(e2e, ns, team, "first", 1)
    document = _document(e2e)
    try:
        _write_document(e2e, json.dumps(document | {"floor": 10**15}))
        admitted = _fill(e2e, ns, team, "after", timeout_s=20)
        assert len(admitted) == QUOTA - 1
    finally:
        restored = _document(e2e)
        if int(restored.get("floor", 0)) >= 10**15:
            restored.pop("floor")
            _write_document(e2e, json.dumps(restored))
