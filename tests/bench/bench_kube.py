"""Pod creation through a real kube-apiserver, with and without accel's webhooks (issue 20 §1).

Uses the e2e harness's local mode (tests/e2e: controlplane, outofcluster): etcd + kube-apiserver
on 127.0.0.1, `accel serve webhook|extender|api` on this host, the shipped webhook
configurations registered by URL. Skipped with one line when the kube-local bundle (or
KUBEBUILDER_ASSETS) is absent.

Each round creates PODS_PER_PHASE GPU pods (profile `parked`: no node has its type, so they stay
Pending and no scheduling work mixes in) from WORKERS concurrent clients, once with the webhook
configurations deleted and once with them registered (the order alternating per round, so load
from other processes hits both alike), and then the same for pods asking for no GPU. Reported:
pods/s and p99 create latency with the webhooks as a ratio to the same API server without them,
medians over ROUNDS rounds. Quota stays exact: every GPU pod is admitted (the team's quota is
larger than all the pods), so a denial is an error, not a figure.
Targets (issue 20): GPU pods >= 0.6x the no-webhook rate and p99 <= 2x.

Bounded: ROUNDS x 2 phases x 2 workloads x PODS_PER_PHASE creates, each create with the client's
60 s timeout, and no new round after BUDGET_S seconds once one is done.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time

import yaml

from tests.e2e import cluster, controlplane, outofcluster
from tests.e2e.burst import burst
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until

PODS_PER_PHASE = 150
WORKERS = 16
ROUNDS = 3
BUDGET_S = 240.0
TEAM = "e2e-bench"
NAMESPACE = "bench-create"
TARGETS = {"gpu_throughput": 0.6, "gpu_p99": 2.0}
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def bench_policy() -> dict[str, str]:
    """The e2e policy plus one team whose quota no burst here can reach."""
    data = cluster.e2e_policy()
    teams = yaml.safe_load(data["teams.yaml"])["teams"]
    teams.append({"name": TEAM, "quota": {"*": 1_000_000}})
    data["teams.yaml"] = yaml.safe_dump({"teams": teams})
    return data


def probe_is_mutated(kubectl: Kubectl) -> bool:
    """A server-side dry run: does the API server call the mutating webhook now?"""
    probe = cluster.gpu_pod("probe", team=TEAM, gpus=1, profile=cluster.PARKED_PROFILE)
    probe["metadata"]["namespace"] = NAMESPACE
    annotations = kubectl.create(probe, dry_run=True)["metadata"].get("annotations", {})
    return any(key.startswith("accel.dev/") and key != "accel.dev/profile" for key in annotations)


def set_webhooks(env: cluster.E2ECluster, on: bool) -> None:
    """Register or delete the webhook configurations, then wait until the API server acts on it."""
    if on:
        outofcluster.apply_webhook_configs(env, env.servers, url_base=f"https://127.0.0.1:{env.servers.ports['webhook']}",
                                           cleanup=False)  # fmt: skip
    else:
        for obj in outofcluster.webhook_configs(env, "https://127.0.0.1:1", b"", strip_match_conditions=True):
            cluster.delete_quietly(env.kubectl, obj["kind"], obj["metadata"]["name"])
    wait_until(lambda: probe_is_mutated(env.kubectl) == on or None, timeout_s=60,
               what=f"webhooks {'registered' if on else 'removed'} in the API server")  # fmt: skip


def pods(tag: str, gpu: bool) -> list[cluster.Obj]:
    out = []
    for i in range(PODS_PER_PHASE):
        pod = cluster.gpu_pod(f"{tag}-{i}", team=TEAM, gpus=1 if gpu else 0,
                              profile=cluster.PARKED_PROFILE if gpu else None)  # fmt: skip
        pod["metadata"]["namespace"] = NAMESPACE
        out.append(pod)
    return out


def phase(env: cluster.E2ECluster, tag: str, gpu: bool) -> tuple[float, float]:
    """(pods/s, p99 ms) of one burst; any refused create fails the benchmark with its message."""
    started = time.perf_counter()
    outcomes = burst(env, pods(tag, gpu), workers=WORKERS)
    seconds = time.perf_counter() - started
    refused = [o for o in outcomes if o.kind != "admitted"]
    if refused:
        raise RuntimeError(f"{len(refused)} of {len(outcomes)} creates refused in {tag}: {refused[0].detail}")
    latencies = sorted(o.seconds for o in outcomes)
    return len(outcomes) / seconds, latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000


def measure(env: cluster.E2ECluster) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per workload, per round: (webhook pods/s, webhook p99, bare pods/s, bare p99)."""
    results: dict[str, list[tuple[float, float, float, float]]] = {"gpu": [], "plain": []}
    started = time.perf_counter()
    for r in range(ROUNDS):
        if r > 0 and time.perf_counter() - started > BUDGET_S:
            break
        for name, gpu in (("gpu", True), ("plain", False)):
            figures: dict[bool, tuple[float, float]] = {}
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                set_webhooks(env, on)
                figures[on] = phase(env, f"r{r}-{name}-{'hook' if on else 'bare'}", gpu)
            results[name].append((*figures[True], *figures[False]))
        # Pending pods would pile up in the watch caches round after round: start each round clean.
        env.kubectl.run(
            "delete", "pods", "--all", "-n", NAMESPACE, "--grace-period=0", "--force", "--wait=false"
        )
    return results


def main() -> int:
    target = cluster.detect()
    if target.mode != "local" or target.assets is None:
        print(f"bench_kube skipped: no kube-local control plane ({target.skip_reason or target.mode})")
        return 0
    workdir = cluster.new_workdir()
    procs = controlplane.processes()
    env: cluster.E2ECluster | None = None
    try:
        control_plane = controlplane.ControlPlane(target.assets, workdir / "control-plane", procs)
        control_plane.start()
        # PATH kubectl if any (it has --subresource etc.), else the one beside the control plane.
        binary = shutil.which("kubectl") or str(target.assets.binary("kubectl") or "kubectl")
        kubectl = Kubectl(kubeconfig=str(control_plane.kubeconfig), binary=binary)
        env = cluster.E2ECluster(kubectl=kubectl, target=target, control_plane=control_plane)
        env.server_minor = cluster.server_minor_version(kubectl)
        outofcluster.start(env, workdir, host="127.0.0.1")
        cluster.apply_policy(kubectl, bench_policy())
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": {"team": TEAM}},
            }
        )
        if control_plane.controller_manager is None:
            with contextlib.suppress(KubectlError):  # already made
                kubectl.run("create", "serviceaccount", "default", "-n", NAMESPACE)
        wait_until(lambda: kubectl.get("serviceaccount", "default", namespace=NAMESPACE), timeout_s=60,
                   what=f"ServiceAccount default in {NAMESPACE}")  # fmt: skip
        cluster.wait_for_policy(
            kubectl, profile=cluster.PARKED_PROFILE, team=TEAM, namespace=NAMESPACE, timeout_s=60
        )
        results = measure(env)
    finally:
        if env is not None:
            for stop in reversed(env.cleanup):
                try:
                    stop()
                except Exception as exc:  # teardown reports and goes on
                    print(f"bench_kube teardown: {stop}: {exc}")
        procs.stop_all()
    ok = True
    print(
        f"pod creates through kube-apiserver (local control plane, workdir {workdir}), {WORKERS} concurrent "
        "clients, "
        f"{len(results['gpu'])} rounds x {PODS_PER_PHASE} pods per phase, with webhooks vs without; medians:"
    )
    for name, rounds in results.items():
        ratio = statistics.median(hook / bare for hook, _, bare, _ in rounds)
        p99_ratio = statistics.median(hook_p99 / bare_p99 for _, hook_p99, _, bare_p99 in rounds)
        print(
            f"  {name:5s} pods: {statistics.median(r[0] for r in rounds):6.0f} pods/s "
            f"(no webhooks {statistics.median(r[2] for r in rounds):6.0f}) -> {ratio:.2f}x | "
            f"p99 {statistics.median(r[1] for r in rounds):.0f} ms (no webhooks "
            f"{statistics.median(r[3] for r in rounds):.0f}) "
            f"-> {p99_ratio:.2f}x"
        )
        if name == "gpu":
            ok &= ratio >= TARGETS["gpu_throughput"] and p99_ratio <= TARGETS["gpu_p99"]
    print(f"  targets: GPU >= {TARGETS['gpu_throughput']}x creates/s and p99 <= {TARGETS['gpu_p99']}x -> "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

