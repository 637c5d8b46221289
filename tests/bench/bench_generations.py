"""One state generation (inventory + admission context) at 1,000 and 10,000 pods, against rebuilding
both from scratch in the same run (issue 20: a generation must cost what changed, not the cluster).

Every webhook replica builds a new state generation at most every 0.2 s while pods change
(serving.cluster_state rule 1): the inventory from the watches and the admission context from it
(team usage, job types, the ledger ids the watch shows, free units). At the target scale (thousands
of GPU nodes, ~10,000 pods) a from-scratch build costs tens of milliseconds, a fifth of a core per
replica. The real path is driven here: a `ClusterState` over the real informers (fed their watch
events directly, no API server), an `Admitter` building its context the way an admission does.

Per size (nodes = pods / 8, 8 GPUs each, four teams, half the pods bound): GENERATIONS generations,
each CHANGES pod events (new pending pods, pods bound to a node, pods deleted) and then the
generation is built and timed. Baseline, same run and same generations: the generation built by
walking every pod, `build_inventory` of the informer stores (with a `ParseCache` kept across
generations, so only new objects are parsed, as before this change) and `context_steps` from no
previous context (every pod charged and counted). Before any
figure, the incremental inventory and context must equal the from-scratch ones (pods, nodes, team
usage, job types); anything else fails the benchmark (exit 2): it is a bug, not a figure.

Printed: median and worst generation, incremental and from scratch, per size; the ratio incremental
/ from scratch at 10,000 pods; and the growth from 1,000 to 10,000 pods (10x for a cost linear in
the pods). Targets: incremental <= 0.25x from scratch at 10,000 pods, growth <= 4x.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accel.admission.context import AdmissionContext, context_steps
from accel.capacity.inventory import ParseCache, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.quota.steps import finish_steps
from kube.fake import FakeCluster
from kube.informer import ClusterWatcher, Informer
from kube.protocol import EventType, WatchEvent
from kube.testing import make_namespace, make_node, make_pod
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from webhook.admitter import Admitter

SIZES = (1_000, 10_000)  # pods; nodes = pods / 8
GENERATIONS = 30
CHANGES = 30  # pod events per generation: ~150 creates/s x 0.2 s
TEAMS = ("nlp", "vision", "research", "platform")
TARGETS = {"ratio": 0.25, "growth": 4.0}
POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy"


@dataclass(frozen=True)
class Figures:
    incremental_ms: list[float]
    scratch_ms: list[float]


class Cluster:
    """The informers of one replica, fed watch events by hand (resourceVersions increasing)."""

    def __init__(self, pods: int) -> None:
        self.watcher = ClusterWatcher(FakeCluster())
        files = {p.name: p.read_text() for p in POLICY.glob("*.yaml")}
        self.state = ClusterState(catalog=load_builtin_catalog(), namespace="accel-system",
                                  watcher=self.watcher, fixed_policy=files, min_rebuild_interval_s=0.0)
        self.admitter = Admitter(self.state, metrics=Metrics(), ledger=None, clock=time.time,
                                 replica_id="bench")
        self._versions = itertools.count(1_000)
        self._names = itertools.count()
        self.nodes = max(1, pods // 8)
        for i in range(self.nodes):
            labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8",
                      "nvidia.com/gpu.present": "true"}
            allocatable = {"nvidia.com/gpu": "8", "cpu": "96", "memory": "1Ti"}
            node = make_node(f"gpu-{i:05d}", labels=labels, allocatable=allocatable)
            self.event(self.watcher.nodes, "ADDED", node)
        for team in TEAMS:
            namespace = make_namespace(f"team-{team}", labels={"team": team})
            self.event(self.watcher.namespaces, "ADDED", namespace)
        self.cache = ParseCache()  # the baseline's, kept across generations
        self.pending: list[dict[str, Any]] = []
        self.bound: list[dict[str, Any]] = []
        for i in range(pods):
            self.create(bound=i % 2 == 0)

    def event(self, informer: Informer, kind: EventType, obj: dict[str, Any]) -> None:
        version = str(next(self._versions))
        obj["metadata"]["resourceVersion"] = version
        informer._apply(WatchEvent(kind, obj))  # the informer's own event path, without an API server
        informer.resource_version = version

    def create(self, *, bound: bool) -> None:
        n = next(self._names)
        team = TEAMS[n % len(TEAMS)]
        node = f"gpu-{(n // 8) % self.nodes:05d}" if bound else None
        pod = make_pod(f"job-{n}", f"team-{team}", node=node, requests={"nvidia.com/gpu": "1"},
                       labels={"team": team, "batch.kubernetes.io/job-name": f"job-{n // 4}"}, uid=f"uid-{n}")
        (self.bound if bound else self.pending).append(pod)
        self.event(self.watcher.pods, "ADDED", pod)

    def churn(self, changes: int) -> None:
        """New pending pods, pending pods bound to a node, bound pods deleted: a third each."""
        for i in range(changes):
            if i % 3 == 0 or not self.pending:
                self.create(bound=False)
            elif i % 3 == 1:
                pod = self.pending.pop(0)
                pod = {**pod, "spec": {**pod["spec"], "nodeName": f"gpu-{i % self.nodes:05d}"}}
                self.bound.append(pod)
                self.event(self.watcher.pods, "MODIFIED", pod)
            else:
                self.event(self.watcher.pods, "DELETED", self.bound.pop(0))

    def from_scratch(self) -> AdmissionContext:
        """A generation by walking every pod: the inventory from the stores, the context from nothing."""
        parsed, w = self.state.policy(), self.watcher
        inventory = build_inventory(w.nodes.items(), w.pods.items(), w.namespaces.items(),
                                    catalog=parsed.catalog, policy=parsed.policy, cache=self.cache,
                                    deleted_pods=self.state.deleted_pods.uids())
        return finish_steps(context_steps(parsed, inventory, now=time.time()))


def check_equal(incremental: AdmissionContext, scratch: AdmissionContext, pods: int) -> None:
    a, b = incremental.inventory, scratch.inventory
    problems = []
    if sorted(p.uid for p in a.pods) != sorted(p.uid for p in b.pods):
        problems.append("pods")
    if [n.name for n in a.nodes] != [n.name for n in b.nodes] or any(
        x.allocated != y.allocated for x, y in zip(a.nodes, b.nodes, strict=True)
    ):
        problems.append("nodes")
    if incremental.usage != scratch.usage:
        problems.append("team usage")
    if incremental.job_types != scratch.job_types:
        problems.append("job types")
    if problems:
        raise SystemExit(
            f"bench_generations at {pods} pods: incremental != from scratch ({', '.join(problems)})"
        )


def measure(pods: int) -> Figures:
    cluster = Cluster(pods)
    cluster.admitter.context()  # the first generation: everything is new
    incremental, scratch = [], []
    for _ in range(GENERATIONS):
        cluster.churn(CHANGES)
        started = time.perf_counter()
        cluster.state.view()
        context = cluster.admitter.context()
        incremental.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        baseline = cluster.from_scratch()
        scratch.append(1000 * (time.perf_counter() - started))
    check_equal(context, baseline, pods)
    return Figures(incremental, scratch)


def main() -> int:
    try:
        results = {pods: measure(pods) for pods in SIZES}
    except SystemExit as exc:
        print(exc)
        return 2
    print(f"state generation (inventory + admission context), {GENERATIONS} generations of {CHANGES} pod "
          f"events each, vs rebuilding both from scratch in the same run:")
    for pods, f in results.items():
        incremental, scratch = statistics.median(f.incremental_ms), statistics.median(f.scratch_ms)
        print(f"  {pods:6d} pods, {max(1, pods // 8):5d} nodes: {incremental:6.2f} ms "
              f"(worst {max(f.incremental_ms):6.2f}) vs from scratch {scratch:6.2f} ms "
              f"(worst {max(f.scratch_ms):6.2f})")
    small, large = (results[p] for p in SIZES)
    ratio = statistics.median(large.incremental_ms) / statistics.median(large.scratch_ms)
    growth = statistics.median(large.incremental_ms) / statistics.median(small.incremental_ms)
    scratch_growth = statistics.median(large.scratch_ms) / statistics.median(small.scratch_ms)
    ok = ratio <= TARGETS["ratio"] and growth <= TARGETS["growth"]
    print(f"  at {SIZES[1]} pods {ratio:.2f}x from scratch; growth {SIZES[0]} -> {SIZES[1]} pods "
          f"{growth:.2f}x (from scratch {scratch_growth:.2f}x; linear 10x)")
    print(f"  targets: <= {TARGETS['ratio']}x from scratch, growth <= {TARGETS['growth']}x -> "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
