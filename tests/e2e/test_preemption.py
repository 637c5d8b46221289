"""Binds that cannot happen, and preemption, through the real API server and kube-scheduler.

1. Bind conflicts: the extender's /bind for a pod deleted after its filter, and for a pod that is
   already bound, answer an error (the scheduler retries or forgets the pod), bind nothing, and
   hold no GPUs afterwards.
2. Preemption with PriorityClasses: a high-priority H100 pod evicts exactly the low-priority
   pods whose H100 GPUs it needs, nothing on the A100 node and no pod without GPUs.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until
from tests.e2e.outofcluster import Servers, _scheduler_client_cert

TYPE_ANNOTATION = "accelerator.opendatahub.io/type"
LOW, HIGH = "e2e-low", "e2e-high"
# Well under the extender's assumeTTLSeconds (30): a failed bind must not hold its GPUs until then.
FREED_WITHIN_S = 20


def _servers(e2e: cluster.E2ECluster) -> Servers:
    if e2e.servers is None or not e2e.scheduler_running:
        pytest.skip("needs the extender and kube-scheduler on this host (local or out-of-cluster mode)")
    servers: Servers = e2e.servers
    return servers


def _scheduler_context(servers: Servers) -> ssl.SSLContext:
    client = _scheduler_client_cert(servers)
    context = servers.tls_context()
    context.load_cert_chain(client / "tls.crt", client / "tls.key")
    return context


def _post(servers: Servers, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to the extender as kube-scheduler does (its client certificate); the JSON answer."""
    request = urllib.request.Request(servers.url("extender", path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, context=_scheduler_context(servers), timeout=15) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _pod(name: str, ns: str, *, gpus: int, profile: str, priority: str | None = None) -> cluster.Obj:
    pod = cluster.gpu_pod(name, team="e2e-preempt", gpus=gpus, profile=profile)
    pod["metadata"]["namespace"] = ns
    if priority:
        pod["spec"]["priorityClassName"] = priority
    return pod


def _node_of(e2e: cluster.E2ECluster, ns: str, name: str) -> str | None:
    node: str | None = e2e.kubectl.get("pod", name, namespace=ns)["spec"].get("nodeName")
    return node


def _the_h100_node_takes_a_full_pod(e2e: cluster.E2ECluster, ns: str, name: str) -> None:
    e2e.kubectl.create(_pod(name, ns, gpus=cluster.GPUS_PER_NODE, profile="h100-only"))
    node = wait_until(lambda: _node_of(e2e, ns, name), timeout_s=FREED_WITHIN_S,
                      what="all 8 H100 GPUs free: the failed bind holds none")  # fmt: skip
    assert node == e2e.gpu_nodes["nvidia-h100-80gb"]


def test_bind_of_a_deleted_or_already_bound_pod_fails_cleanly(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    servers = _servers(e2e)
    ns = team_namespace("e2e-preempt")
    h100 = e2e.gpu_nodes["nvidia-h100-80gb"]
    # Kept Pending by a nodeSelector no node has, so kube-scheduler never races these calls.
    doomed = _pod("doomed", ns, gpus=cluster.GPUS_PER_NODE, profile="h100-only")
    doomed["spec"]["nodeSelector"] = {"e2e.accel.dev/nowhere": "true"}
    created = e2e.kubectl.create(doomed)
    uid = created["metadata"]["uid"]

    def filter_passes_h100() -> dict[str, Any] | None:
        answer = _post(servers, "/filter", {"Pod": created, "NodeNames": [h100]})
        return answer if h100 in (answer.get("NodeNames") or []) and not answer.get("Error") else None

    wait_until(filter_passes_h100, timeout_s=30, what="the extender's filter passing the H100 node")
    e2e.kubectl.run("delete", "pod", "doomed", "-n", ns, "--grace-period=0", "--force", "--wait=true")
    answer = _post(servers, "/bind", {"PodName": "doomed", "PodNamespace": ns, "PodUID": uid, "Node": h100})
    assert answer["Error"], "a bind of a deleted pod must fail"
    assert "doomed" in answer["Error"], answer
    assert not e2e.kubectl.get("pods", namespace=ns)["items"], "nothing was bound or re-created"
    _the_h100_node_takes_a_full_pod(e2e, ns, "full")

    # The pod the scheduler just bound, bound again elsewhere: the API server's 409, passed on.
    bound = e2e.kubectl.get("pod", "full", namespace=ns)
    a100 = e2e.gpu_nodes["nvidia-a100-80gb"]
    again = _post(
        servers,
        "/bind",
        {"PodName": "full", "PodNamespace": ns, "PodUID": bound["metadata"]["uid"], "Node": a100},
    )
    assert again["Error"], "a second bind must fail"
    assert _node_of(e2e, ns, "full") == h100, "the first bind stands"


@pytest.fixture
def priority_classes(e2e: cluster.E2ECluster) -> Iterator[None]:
    for name, value in ((LOW, 100), (HIGH, 100000)):
        e2e.kubectl.apply(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "preemptionPolicy": "PreemptLowerPriority",
            }
        )
    yield
    for name in (LOW, HIGH):
        cluster.delete_quietly(e2e.kubectl, "priorityclass", name)


def test_preemption_evicts_only_pods_holding_the_gpus_needed(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], priority_classes: None
) -> None:
    _servers(e2e)
    ns = team_namespace("e2e-preempt")
    h100, a100 = e2e.gpu_nodes["nvidia-h100-80gb"], e2e.gpu_nodes["nvidia-a100-80gb"]
    low = [_pod(f"low-h100-{i}", ns, gpus=1, profile="h100-only", priority=LOW) for i in range(8)]
    low += [_pod(f"low-a100-{i}", ns, gpus=1, profile="a100-only", priority=LOW) for i in range(8)]
    for pod in low:
        e2e.kubectl.create(pod)
    # A low-priority pod without GPUs on the H100 node (placed by nodeName, as a kubelet's
    # static or DaemonSet pod would be): evicting it would free nothing the preemptor needs.
    bystander = cluster.gpu_pod("low-cpu", team="e2e-preempt", gpus=0)
    bystander["metadata"]["namespace"] = ns
    bystander["spec"] |= {"nodeName": h100, "priorityClassName": LOW}
    e2e.kubectl.create(bystander)

    def placed() -> dict[str, str] | None:
        nodes = {
            p["metadata"]["name"]: p["spec"].get("nodeName")
            for p in e2e.kubectl.get("pods", namespace=ns)["items"]
        }
        return nodes if len(nodes) == len(low) + 1 and all(nodes.values()) else None  # type: ignore[return-value]

    before = wait_until(placed, timeout_s=90, what="16 low-priority pods bound (both GPU nodes full)")
    assert (
        sum(1 for n in before.values() if n == h100) == 9
        and sum(1 for n in before.values() if n == a100) == 8
    )

    e2e.kubectl.create(_pod("urgent", ns, gpus=2, profile="h100-only", priority=HIGH))
    node = wait_until(lambda: _node_of(e2e, ns, "urgent"), timeout_s=90, what="the high-priority pod bound")
    assert node == h100
    urgent = e2e.kubectl.get("pod", "urgent", namespace=ns)
    assert urgent["metadata"]["annotations"][TYPE_ANNOTATION] == "nvidia-h100-80gb"

    after = {p["metadata"]["name"] for p in e2e.kubectl.get("pods", namespace=ns)["items"]}
    evicted = set(before) - after
    assert len(evicted) == 2, f"exactly the 2 GPUs needed are freed: evicted {sorted(evicted)}"
    assert all(name.startswith("low-h100-") for name in evicted), f"only H100 GPU holders: {sorted(evicted)}"
    assert "low-cpu" in after, "a pod without GPUs frees nothing the preemptor needs"
