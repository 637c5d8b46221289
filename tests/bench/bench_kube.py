"""Pod creation through a real kube-apiserver, with and without accel's webhooks (issue 20 §1).

Uses the e2e harness's local mode (tests/e2e: controlplane, outofcluster): etcd + kube-apiserver
on 127.0.0.1, `accel serve webhook|extender|api` on this host, the shipped webhook
configurations registered by URL. Skipped with one line when the kube-local bundle (or
KUBEBUILDER_ASSETS) is absent.

Scenarios (SCENARIOS), each a burst of GPU pods (profile `parked`; kube-scheduler is stopped and
there are no nodes, so they stay Pending and no scheduling work mixes in) from WORKERS concurrent
clients:
- `one team`: every pod in one team's namespace;
- `20 teams`: the pods spread round-robin over 20 teams' namespaces (20 teams bursting at once);
- `2 replicas`: as `one team`, through two `accel serve webhook --reuse-port` replicas sharing
  the ledger and one port: the kernel spreads the API server's connections over them, as a
  Service's kube-proxy rules do in the kernel (no user-space hop); each has its own `--peer-port`,
  so they elect a quota ledger leader that writes the ledger for both (webhook/peer.py);
and `plain`: pods asking for no GPU, one namespace, webhooks called directly. Not run unless named
in BENCH_KUBE_SCENARIOS (comma-separated keys, e.g. `replicas-2,replicas-2-proxy`; default: the
four above): `2 replicas, no ledger leader` (key `replicas-2-no-leader`: the same pair without
`--peer-port`: both write the ledger and lose compare-and-swap races to each other), and
`2 replicas via proxy`, the same two replicas (no leader) behind the e2e round-robin proxy
(tests/e2e/proxy.py, a Python thread per connection inside this process, kept for the e2e failover
tests: its CPU is in the "client" line and its latency in the figures). Ledger counters (and the
decisions the leader made for the other replica) come from each replica's own metrics port.
Each round runs every scenario once with the webhook configurations deleted and once with them
registered (the order alternating per round, so load from other processes hits both alike). The
webhook phase uses fresh teams whose quota the burst exceeds by about 10 %: the quota must stay
exact, i.e. exactly `quota` pods admitted per team, every other create denied for quota, and the
API server holding exactly the admitted pods; anything else fails the benchmark (exit 2), it is
not a figure. The phase without webhooks creates the same number of pods in namespaces of its own.
Reported per scenario, as medians over ROUNDS rounds: creates/s (admitted and denied alike) and
p99 create latency with the webhooks as a ratio to the same API server without them, and the
CPU-time ratio: CPU seconds per create of every process of the run (etcd, kube-apiserver, the
accel servers, this client) without webhooks over the same with them; it moves far less than the
wall-clock figures on a machine shared with other work. Also printed: where the webhook phase's
CPU went (ms per create: API server, etcd, webhook replicas, client and proxy, the rest).
Targets (issue 20): GPU pods >= 0.6x the no-webhook rate and p99 <= 2x, in every GPU scenario.

Bounded: ROUNDS x (scenarios + plain) x 2 phases of about PODS creates each, each create with the
client's 60 s timeout, and no new round after BUDGET_S seconds once one is done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

import yaml

from tests.e2e import cluster, controlplane, outofcluster
from tests.e2e.burst import Outcome, burst
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until
from tests.e2e.proxy import RoundRobinProxy

PODS = 150
WORKERS = 16
ROUNDS = 3
BUDGET_S = 300.0
BARE_TEAM = "bench-bare"  # the phases without webhooks: no webhook sees them, the team is only a label
TARGETS = {"gpu_throughput": 0.6, "gpu_p99": 2.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    teams: int
    quota: int  # GPUs per team; each team gets ceil(PODS / teams) one-GPU pods, about 10 % more
    replicas: int = 1
    gpu: bool = True
    route: str = "direct"  # "direct" (one replica), "reuse-port" (two on one port), "reuse-port-no-leader"
    # (the same without the ledger leader election: both write the ledger) or "proxy" (two)


ALL_SCENARIOS = (
    Scenario("one-team", "one team", teams=1, quota=135),
    Scenario("teams-20", "20 teams", teams=20, quota=7),  # 8 pods per team
    Scenario("replicas-2", "2 replicas", teams=1, quota=135, replicas=2, route="reuse-port"),
    Scenario("replicas-2-no-leader", "2 replicas, no ledger leader", teams=1, quota=135, replicas=2,
             route="reuse-port-no-leader"),
    Scenario("replicas-2-proxy", "2 replicas via proxy", teams=1, quota=135, replicas=2, route="proxy"),
    Scenario("plain", "plain pods", teams=1, quota=0, gpu=False),
)
DEFAULT_SCENARIOS = ("one-team", "teams-20", "replicas-2", "plain")


def chosen_scenarios() -> tuple[Scenario, ...]:
    """BENCH_KUBE_SCENARIOS (module docstring), in ALL_SCENARIOS order."""
    keys = [k.strip() for k in os.environ.get("BENCH_KUBE_SCENARIOS", "").split(",") if k.strip()]
    known = {s.key for s in ALL_SCENARIOS}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise SystemExit(
            f"BENCH_KUBE_SCENARIOS: unknown {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    wanted = set(keys or DEFAULT_SCENARIOS)
    return tuple(s for s in ALL_SCENARIOS if s.key in wanted)


SCENARIOS = chosen_scenarios()


def per_team(scenario: Scenario) -> int:
    return -(-PODS // scenario.teams)


def team_name(round_index: int, scenario: Scenario, index: int) -> str:
    """A fresh team (and namespace of that name) per round: no earlier pod counts against it."""
    return f"bench-r{round_index}-{scenario.key}-t{index}"


def bare_namespace(index: int) -> str:
    return f"bench-bare-t{index}"


def bench_policy() -> dict[str, str]:
    """The e2e policy plus the teams of every round and scenario, and the no-webhook team."""
    data = cluster.e2e_policy()
    teams = yaml.safe_load(data["teams.yaml"])["teams"]
    teams.append({"name": BARE_TEAM, "quota": {"*": 1_000_000}})
    for r in range(ROUNDS):
        for scenario in ALL_SCENARIOS:
            for i in range(scenario.teams):
                quota = scenario.quota if scenario.gpu else 1_000_000
                teams.append({"name": team_name(r, scenario, i), "quota": {"*": quota}})
    data["teams.yaml"] = yaml.safe_dump({"teams": teams})
    return data


def make_namespace(env: cluster.E2ECluster, name: str, team: str) -> None:
    """The namespace and its `default` ServiceAccount, through the admin client (86 kubectl
    processes would take minutes on 2 cores)."""
    control = env.control_plane
    assert control is not None
    status, body = control.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}},
    )
    if status not in (201, 409):
        raise RuntimeError(f"namespace {name}: HTTP {status}: {body}")
    if control.controller_manager is None:
        control.request(
            "POST",
            f"/api/v1/namespaces/{name}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )
    wait_until(
        lambda: (
            control.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200 or None
        ),
        timeout_s=60,
        what=f"ServiceAccount default in {name}",
    )


def probe(env: cluster.E2ECluster) -> bool:
    """A server-side dry run of a GPU pod: does the API server call the mutating webhook now?"""
    pod = cluster.gpu_pod("probe", team=BARE_TEAM, gpus=1, profile=cluster.PARKED_PROFILE)
    pod["metadata"]["namespace"] = bare_namespace(0)
    annotations = env.kubectl.create(pod, dry_run=True)["metadata"].get("annotations", {})
    return any(key.startswith("accel.dev/") and key != "accel.dev/profile" for key in annotations)


def goes_through(env: cluster.E2ECluster, proxy: RoundRobinProxy) -> bool:
    before = proxy.forwarded_bytes
    return probe(env) and proxy.forwarded_bytes > before


def set_webhooks(env: cluster.E2ECluster, url_base: str | None, proxy: RoundRobinProxy | None = None) -> None:
    """Point the webhooks at `url_base` (None: delete them), then wait until the API server acts
    on it: a dry run is mutated (through `proxy` when given) or, for None, is not."""
    assert env.servers is not None
    if url_base is None:
        for obj in outofcluster.webhook_configs(env, "https://127.0.0.1:1", b"", strip_match_conditions=True):
            cluster.delete_quietly(env.kubectl, obj["kind"], obj["metadata"]["name"])
        wait_until(lambda: not probe(env) or None, timeout_s=60, what="webhooks removed in the API server")
        return
    outofcluster.apply_webhook_configs(env, env.servers, url_base=url_base, cleanup=False)
    if proxy is not None:
        wait_until(
            lambda: goes_through(env, proxy) or None, timeout_s=60, what="webhooks called through the proxy"
        )
    else:
        wait_until(lambda: probe(env) or None, timeout_s=60, what="webhooks registered in the API server")


def pods(scenario: Scenario, namespaces: list[str], tag: str) -> list[cluster.Obj]:
    """PODS-ish pods, round-robin over the namespaces (every team bursts at once)."""
    out = []
    for j in range(per_team(scenario) * len(namespaces)):
        namespace = namespaces[j % len(namespaces)]
        pod = cluster.gpu_pod(
            f"{tag}-{j}",
            team="-",
            gpus=1 if scenario.gpu else 0,
            profile=cluster.PARKED_PROFILE if scenario.gpu else None,
        )
        pod["metadata"]["namespace"] = namespace
        pod["metadata"]["labels"]["team"] = namespace if namespace.startswith("bench-r") else BARE_TEAM
        out.append(pod)
    return out


def cpu_seconds(procs: controlplane.Processes) -> dict[str, float]:
    """CPU seconds so far per group of the run's processes (and this one: client threads, proxy)."""
    groups: dict[str, float] = {}
    for process in procs.started:
        if not process.running():
            continue
        try:
            with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = process.name
        group = (
            "webhook"
            if name.startswith("accel serve webhook")
            else "apiserver"
            if "apiserver" in name
            else "etcd"
            if name.startswith("etcd")
            else "other"
        )
        groups[group] = (
            groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
        )  # utime + stime
    times = os.times()
    groups["client"] = times.user + times.system
    return groups


LEDGER_COUNTERS = ("writes", "decisions", "written_bytes", "conflicts", "forwarded", "fallback")
FORWARDED = {'accel_quota_ledger_forwarded_total{result="decided"}': "forwarded",
             'accel_quota_ledger_forwarded_total{result="fallback"}': "fallback"}


def ledger_counters(env: cluster.E2ECluster, urls: list[str]) -> dict[str, float]:
    """accel_quota_ledger_*_total summed over the webhook replicas' metrics `urls`."""
    assert env.servers is not None
    totals = dict.fromkeys(LEDGER_COUNTERS, 0.0)
    for url in urls:
        context = env.servers.tls_context() if url.startswith("https:") else None
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            text = response.read().decode()
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series in FORWARDED:
                totals[FORWARDED[series]] += float(value)
                continue
            for name in LEDGER_COUNTERS:
                if line.startswith(f"accel_quota_ledger_{name}_total{{"):
                    totals[name] += float(value)
    return totals


@dataclass(frozen=True)
class Phase:
    creates_per_s: float
    p99_ms: float
    cpu: dict[str, float]  # group -> CPU seconds during the phase
    creates: int
    ledger: dict[str, float]  # LEDGER_COUNTERS during the phase (webhook phases)

    @property
    def cpu_per_create(self) -> float:
        return sum(self.cpu.values()) / self.creates


def phase(
    env: cluster.E2ECluster, procs: controlplane.Processes, work: list[cluster.Obj], ports: list[str]
) -> tuple[Phase, list[Outcome]]:
    counted = ledger_counters(env, ports)
    before = cpu_seconds(procs)
    started = time.perf_counter()
    outcomes = burst(env, work, workers=WORKERS)
    seconds = time.perf_counter() - started
    after = cpu_seconds(procs)
    ledger = {name: value - counted[name] for name, value in ledger_counters(env, ports).items()}
    latencies = sorted(o.seconds for o in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    cpu = {group: after.get(group, 0.0) - before.get(group, 0.0) for group in after}
    return Phase(len(outcomes) / seconds, p99, cpu, len(outcomes), ledger), outcomes


def check_exact(
    env: cluster.E2ECluster, scenario: Scenario, namespaces: list[str], outcomes: list[Outcome]
) -> str:
    """Raise unless exactly the quota was admitted per team and the API server holds exactly those pods."""
    control = env.control_plane
    assert control is not None
    kinds = Counter(o.kind for o in outcomes)
    errors = [o.detail for o in outcomes if o.kind == "error"]
    if errors:
        raise RuntimeError(f"{scenario.title}: {len(errors)} creates failed (not for quota): {errors[0]}")
    if not scenario.gpu:
        if kinds["admitted"] != len(outcomes):
            raise RuntimeError(f"{scenario.title}: {kinds} (every plain pod must be admitted)")
        return f"all {len(outcomes)} admitted"
    for namespace in namespaces:
        status, body = control.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        stored = len(body.get("items") or []) if status == 200 else -1
        if stored != scenario.quota:
            raise RuntimeError(
                f"{scenario.title}: team {namespace} holds {stored} pods, quota {scenario.quota} "
                f"(the burst asked for {per_team(scenario)}): quota not exact"
            )
    want = scenario.quota * len(namespaces)
    if kinds["admitted"] != want or kinds["quota"] != len(outcomes) - want:
        raise RuntimeError(f"{scenario.title}: {dict(kinds)}, want {want} admitted: quota not exact")
    return f"{want} admitted = quota, {kinds['quota']} denied for quota"


def clear_pods(env: cluster.E2ECluster, namespaces: list[str]) -> None:
    """Delete every pod of `namespaces` (Pending pods go at once): the watch caches stay small."""
    assert env.control_plane is not None
    for namespace in namespaces:
        env.control_plane.request(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods",
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
        )


@dataclass(frozen=True)
class Round:
    hook: Phase
    bare: Phase
    exact: str


@dataclass(frozen=True)
class Route:
    """How the API server reaches the webhook in a scenario, and where its replicas' metrics are."""

    url: str
    metrics: list[str]
    proxy: RoundRobinProxy | None = None


def measure(
    env: cluster.E2ECluster, procs: controlplane.Processes, routes: dict[str, Route]
) -> dict[str, list[Round]]:
    assert env.servers is not None
    results: dict[str, list[Round]] = {s.key: [] for s in SCENARIOS}
    bare_namespaces = [bare_namespace(i) for i in range(max(s.teams for s in SCENARIOS))]
    started = time.perf_counter()
    for r in range(ROUNDS):
        if r > 0 and time.perf_counter() - started > BUDGET_S:
            break
        for scenario in SCENARIOS:
            hook_namespaces = [team_name(r, scenario, i) for i in range(scenario.teams)]
            for namespace in hook_namespaces:
                make_namespace(env, namespace, namespace)
            figures: dict[bool, Phase] = {}
            exact = ""
            route = routes[scenario.route]
            for on in (False, True) if r % 2 == 0 else (True, False):
                if on:
                    set_webhooks(env, route.url, route.proxy)
                    work = pods(scenario, hook_namespaces, f"{scenario.key}-hook")
                    figures[on], outcomes = phase(env, procs, work, route.metrics)
                    exact = check_exact(env, scenario, hook_namespaces, outcomes)
                else:
                    set_webhooks(env, None)
                    work = pods(scenario, bare_namespaces[: scenario.teams], f"r{r}-{scenario.key}-bare")
                    figures[on], _ = phase(env, procs, work, route.metrics)
            results[scenario.key].append(Round(figures[True], figures[False], exact))
            # Pending pods would pile up in the watch caches round after round: clear them.
            clear_pods(env, hook_namespaces + bare_namespaces[: scenario.teams])
    return results


def report(results: dict[str, list[Round]]) -> bool:
    ok = True
    for scenario in SCENARIOS:
        rounds = results[scenario.key]
        if not rounds:
            continue
        ratio = statistics.median(r.hook.creates_per_s / r.bare.creates_per_s for r in rounds)
        p99_ratio = statistics.median(r.hook.p99_ms / r.bare.p99_ms for r in rounds)
        cpu_ratio = statistics.median(r.bare.cpu_per_create / r.hook.cpu_per_create for r in rounds)
        spread = ", ".join(f"{r.hook.creates_per_s / r.bare.creates_per_s:.2f}" for r in rounds)
        hook_rate = statistics.median(r.hook.creates_per_s for r in rounds)
        bare_rate = statistics.median(r.bare.creates_per_s for r in rounds)
        hook_p99 = statistics.median(r.hook.p99_ms for r in rounds)
        bare_p99 = statistics.median(r.bare.p99_ms for r in rounds)
        print(
            f"  {scenario.title:10s}: {hook_rate:5.0f} creates/s (no webhooks {bare_rate:5.0f}) "
            f"-> {ratio:.2f}x [rounds {spread}] | p99 {hook_p99:.0f} ms (no webhooks {bare_p99:.0f}) "
            f"-> {p99_ratio:.2f}x | CPU-time {cpu_ratio:.2f}x"
        )
        groups = sorted({g for r in rounds for g in r.hook.cpu})
        where = ", ".join(
            f"{g} {statistics.median(1000 * r.hook.cpu.get(g, 0.0) / r.hook.creates for r in rounds):.1f}"
            for g in groups
        )
        bare_where = ", ".join(
            f"{g} {statistics.median(1000 * r.bare.cpu.get(g, 0.0) / r.bare.creates for r in rounds):.1f}"
            for g in groups
        )
        print(f"  {'':10s}  CPU ms per create with webhooks: {where}; without: {bare_where}")
        ledger = {name: statistics.median(r.hook.ledger[name] for r in rounds) for name in LEDGER_COUNTERS}
        if ledger["writes"]:
            batch = ledger["decisions"] / ledger["writes"]
            print(
                f"  {'':10s}  ledger: {ledger['writes']:.0f} writes ({batch:.1f} decisions each), "
                f"{ledger['written_bytes'] / ledger['writes'] / 1024:.1f} KiB per write, "
                f"{ledger['written_bytes'] / 1024:.0f} KiB written, {ledger['conflicts']:.0f} conflicts"
                + (f"; {ledger['forwarded']:.0f} decided by the ledger leader for the other replica, "
                   f"{ledger['fallback']:.0f} fallbacks" if ledger["forwarded"] or ledger["fallback"] else "")
            )
        print(f"  {'':10s}  quota exact in every round: {rounds[-1].exact}")
        if scenario.gpu:
            ok &= ratio >= TARGETS["gpu_throughput"] and p99_ratio <= TARGETS["gpu_p99"]
    return ok


def metrics_url(process: controlplane.Process) -> str:
    """Each `accel serve` of the harness has its own metrics port (plain HTTP, --metrics-port)."""
    return f"http://127.0.0.1:{process.metrics_port}/metrics"


def start_reuse_port_pair(servers: outofcluster.Servers, *, leader: bool = True) -> Route:
    """Two webhook replicas on one port with SO_REUSEPORT, each with its own metrics port; with
    `leader`, each with its own peer port too: they elect a quota ledger leader (webhook/peer.py)."""
    port = controlplane.free_port()
    args = ("--reuse-port", *(outofcluster.peer_args(servers) if leader else ()))
    suffix = "reuse-port" if leader else "reuse-port-no-leader"
    launched = [servers.launch("webhook", port, log_suffix=f"-{suffix}-{i}", args=args) for i in (1, 2)]
    for process in launched:
        servers.wait_ready(process)
    return Route(f"https://127.0.0.1:{port}", [metrics_url(p) for p in launched])


def main() -> int:
    target = cluster.detect()
    if target.mode != "local" or target.assets is None:
        print(f"bench_kube skipped: no kube-local control plane ({target.skip_reason or target.mode})")
        return 0
    workdir = cluster.new_workdir()
    procs = controlplane.processes()
    env: cluster.E2ECluster | None = None
    proxy: RoundRobinProxy | None = None
    try:
        control_plane = controlplane.ControlPlane(target.assets, workdir / "control-plane", procs)
        control_plane.start()
        # PATH kubectl if any (it has --subresource etc.), else the one beside the control plane.
        binary = shutil.which("kubectl") or str(target.assets.binary("kubectl") or "kubectl")
        kubectl = Kubectl(kubeconfig=str(control_plane.kubeconfig), binary=binary)
        env = cluster.E2ECluster(kubectl=kubectl, target=target, control_plane=control_plane)
        env.server_minor = cluster.server_minor_version(kubectl)
        servers = outofcluster.start(env, workdir, host="127.0.0.1")
        if servers.scheduler is not None:
            # Pod creation is measured, not scheduling: kube-scheduler would try (and record
            # events and status for) only the mutated pods, whose schedulerName is accel's.
            procs.stop(servers.scheduler, grace_s=0)
            servers.scheduler = None
        cluster.apply_policy(kubectl, bench_policy())
        for i in range(max(s.teams for s in SCENARIOS)):
            make_namespace(env, bare_namespace(i), BARE_TEAM)
        first = servers.running["webhook"]
        routes = {"direct": Route(f"https://127.0.0.1:{first.port}", [metrics_url(first)])}
        if any(s.route == "reuse-port" for s in SCENARIOS):
            routes["reuse-port"] = start_reuse_port_pair(servers)
        if any(s.route == "reuse-port-no-leader" for s in SCENARIOS):
            routes["reuse-port-no-leader"] = start_reuse_port_pair(servers, leader=False)
        if any(s.route == "proxy" for s in SCENARIOS):
            second = servers.start("webhook", log_suffix="-replica-2")
            proxy = RoundRobinProxy([first.port, second.port]).start()
            pair = [metrics_url(first), metrics_url(second)]
            routes["proxy"] = Route(f"https://127.0.0.1:{proxy.port}", pair, proxy)
        cluster.wait_for_policy(
            kubectl, profile=cluster.PARKED_PROFILE, team=BARE_TEAM, namespace=bare_namespace(0), timeout_s=60
        )
        results = measure(env, procs, routes)
    except (RuntimeError, KubectlError) as exc:
        print(f"bench_kube failed: {exc}")
        return 2
    finally:
        if env is not None:
            for stop in reversed(env.cleanup):
                try:
                    stop()
                except Exception as exc:  # teardown reports and goes on
                    print(f"bench_kube teardown: {stop}: {exc}")
        procs.stop_all()
        if proxy is not None:
            with contextlib.suppress(OSError):
                proxy.stop()
    rounds = len(next(iter(results.values())))
    print(
        f"pod creates through kube-apiserver (local control plane, workdir {workdir}), {WORKERS} concurrent "
        f"clients, {rounds} rounds x ~{PODS} pods per phase, with webhooks vs without; medians:"
    )
    ok = report(results)
    print(
        f"  targets: GPU >= {TARGETS['gpu_throughput']}x creates/s and p99 <= {TARGETS['gpu_p99']}x in every "
        f"scenario -> {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
