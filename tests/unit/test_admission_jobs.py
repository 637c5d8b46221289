"""Pods of one multi-node job keep one accelerator type (accel.admission.plan rule 7,
accel.admission.jobs)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.jobs import JobTypes, job_types
from accel.admission.plan import mutate
from accel.admission.validate import plan_validation
from accel.capacity.inventory import Inventory
from accel.cluster.pods import PodView
from accel.quota.ledger import LEDGER_KEY, Ledger, Reservation
from accel.quota.steps import finish_steps
from tests.builders import DEFAULT_NODES, example_policy, gpu_pod, make_context, make_inventory, node_model

JOB = {"training.kubeflow.org/job-name": "llama"}
QUOTA_TYPE = "accel.dev/quota-type"
TYPE = "accelerator.opendatahub.io/type"


def worker(i: int, *, node: str | None = None, namespace: str = "nlp", labels: dict[str, str] | None = None,
           annotations: dict[str, str] | None = None, gpus: str = "8") -> dict[str, Any]:
    pod = gpu_pod(profile="large-any", gpus=gpus, namespace=namespace, name=f"llama-worker-{i}",
                  labels=JOB if labels is None else labels, annotations=annotations, node=node)
    if node:
        pod["status"]["phase"] = "Running"
    return pod


def reservation(
    rid: str, accel_type: str, *, job: str = "llama", namespace: str = "nlp", created: float = 0.0
) -> Reservation:
    return Reservation(id=rid, team="nlp", type=accel_type, amount=Fraction(8), namespace=namespace,
                       created=created, expires=created + 120, job=job)


def ledger_of(*reservations: Reservation) -> Ledger:
    return Ledger({r.id: r for r in reservations})


H100_WORKER = worker(0, node="h100-1")
FULL_H100 = [worker(10 + i, node="h100-1", labels={}, gpus="8") for i in range(2)]  # nlp: 16 of 16 H100


@pytest.mark.parametrize(
    ("pods", "ledger", "labels", "expected", "split"),
    [
        pytest.param([], Ledger(), JOB, None, False, id="first-pod-of-job-gets-normal-choice"),
        pytest.param(
            [H100_WORKER], Ledger(), JOB, "nvidia-h100-80gb", False, id="job-on-h100-in-watch-keeps-h100"
        ),
        pytest.param(
            [],
            ledger_of(reservation("r0", "nvidia-a100-80gb")),
            JOB,
            "nvidia-a100-80gb",
            False,
            id="job-type-from-ledger-before-the-watch-shows-it",
        ),
        pytest.param(
            [],
            ledger_of(
                reservation("r0", "nvidia-a100-80gb", created=1),
                reservation("r1", "nvidia-h100-80gb", created=2),
            ),
            JOB,
            "nvidia-h100-80gb",
            False,
            id="newest-ledger-reservation-wins",
        ),
        pytest.param(
            [],
            ledger_of(reservation("r0", "nvidia-a100-80gb", namespace="research")),
            JOB,
            None,
            False,
            id="same-job-name-in-another-namespace-ignored",
        ),
        pytest.param([H100_WORKER], Ledger(), {}, None, False, id="pod-without-job-label-not-steered"),
        pytest.param(
            [H100_WORKER, *FULL_H100],
            Ledger(),
            JOB,
            None,
            True,
            id="job-type-out-of-quota-falls-back-with-split-warning",
        ),
        pytest.param(
            [worker(0, node="a100-1", labels={"volcano.sh/job-name": "llama"})],
            Ledger(),
            {"volcano.sh/job-name": "llama"},
            "nvidia-a100-80gb",
            False,
            id="volcano-job-label-counts",
        ),
    ],
)
def test_job_pods_prefer_their_jobs_type(pods: list[dict[str, Any]], ledger: Ledger, labels: dict[str, str],
                                         expected: str | None, split: bool) -> None:
    """`expected`: the one type the job's pod is restricted to, or None: left to the bind (accel.admission
    rule 3)."""
    ctx = make_context(pods)
    pod = worker(1, labels=labels)
    decision = mutate(pod, namespace="nlp", ctx=ctx, ledger=ledger, now=0.0)
    patched = jsonpatch.apply_patch(pod, list(decision.ops))
    assert decision.allowed and patched["metadata"]["annotations"].get(TYPE) == expected
    assert QUOTA_TYPE not in patched["metadata"]["annotations"]
    assert bool(decision.warnings) is split
    if split:
        assert (
            'job "llama" is split across types' in decision.warnings[0]
            and "nvidia-h100-80gb" in decision.warnings[0]
        )


def test_job_type_is_the_most_common_among_its_pods_ties_by_name() -> None:
    pods = [worker(0, node="h100-1"), worker(1, node="a100-1"), worker(2, node="a100-1"),
            worker(3, annotations={QUOTA_TYPE: "nvidia-h100-80gb"}),
            worker(0, namespace="research", node="h200-1"), worker(1, namespace="research", node="a100-1")]
    catalog = make_context().catalog
    assert job_types(make_inventory(pods), catalog) == {
        ("nlp", "llama"): "nvidia-a100-80gb", ("research", "llama"): "nvidia-a100-80gb"}
    assert job_types(make_inventory(pods[:1] + pods[3:4]), catalog) == {("nlp", "llama"): "nvidia-h100-80gb"}


def test_a_pending_pods_type_annotation_does_not_steer_its_job() -> None:
    """Issue 21: annotations stay editable after admission; the job's type is what its pods are
    charged as (their immutable node affinity), so re-annotating pending pods steers nothing."""
    ctx = make_context()
    admitted = []
    for i in range(3):
        pod = worker(i, gpus="1")
        pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}  # pinned to A100
        patched = jsonpatch.apply_patch(pod, list(mutate(pod, namespace="nlp", ctx=ctx).ops))
        patched["metadata"]["annotations"][TYPE] = "nvidia-h200-141gb"  # edited after admission
        admitted.append(patched)
    assert job_types(make_inventory(admitted), ctx.catalog) == {("nlp", "llama"): "nvidia-a100-80gb"}


def test_validation_records_the_job_in_the_reservation() -> None:
    ctx = make_context()
    pod = worker(1)
    patched = jsonpatch.apply_patch(pod, list(mutate(pod, namespace="nlp", ctx=ctx).ops))
    plan = plan_validation(patched, namespace="nlp", ctx=ctx, request_uid="u", now=0.0, dry_run=False)
    assert plan.quota is not None and plan.quota.reservation.job == "llama"


def test_reservation_job_round_trips_and_old_documents_read_without_one() -> None:
    ledger = ledger_of(reservation("r0", "nvidia-h100-80gb"), reservation("r1", "nvidia-h100-80gb", job=""))
    again = Ledger.from_data(ledger.to_data())
    assert again.reservations == ledger.reservations
    old = '{"reservations": {"r9": {"team": "nlp", "type": "nvidia-a100-80gb", "amount": "1", "expires": 5}}}'
    assert Ledger.from_data({LEDGER_KEY: old}).reservations["r9"].job == ""


def _job_pool() -> tuple[PodView, ...]:
    """Pods of three jobs in two namespaces (and job-less ones): bound to nodes that may go, to a
    node never seen, pending pinned to one type by nodeSelector, or undecided; 8 copies each."""
    pods = []
    places: list[tuple[str | None, str | None]] = [
        ("h100-1", None), ("h100-2", None), ("a100-1", None), ("l4-1", None), ("gone-1", None),
        (None, "NVIDIA-A100-SXM4-80GB"), (None, "NVIDIA-H100-80GB-HBM3"), (None, None)]
    for copy_index in range(8):
        for j, labels in enumerate([JOB, {"training.kubeflow.org/job-name": "bert"}, {}]):
            for namespace in ("nlp", "research"):
                for p, (node, product) in enumerate(places):
                    pod = worker(copy_index * 100 + j * 10 + p, node=node, namespace=namespace, labels=labels)
                    if product:
                        pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": product}
                    pods.append(pod)
    return make_inventory(pods).pods


JOB_POOL = _job_pool()
H100_TWIN = node_model("h100-2", "nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3")
OTHER_CATALOG = example_policy().catalog


@settings(max_examples=60, deadline=None)
@given(generations=st.lists(
    st.tuples(
        st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),  # pods of the last one kept
        st.integers(min_value=0, max_value=len(JOB_POOL)),  # where the pool's new pods start
        st.integers(min_value=0, max_value=300),  # how many (several steps)
        st.sampled_from(["none", "none", "drop-h100", "drop-a100", "hardware", "rebuild"]),
        st.sampled_from([False, False, False, True]),  # another catalog object (a fresh count)
    ),
    min_size=1, max_size=6,
))
def test_property_job_types_in_steps_equal_a_full_walk_generation_after_generation(
    generations: list[tuple[list[int], int, int, str, bool]],
) -> None:
    """accel.admission.jobs.JobTypes: one across random generations (pods kept by object, new, gone;
    a node gone with a twin left, so only its pods' types change; new node objects; another catalog),
    in steps: each result equals `job_types` of its inventory (rule 2, ties by name)."""
    memo, catalog = JobTypes(), make_context().catalog
    base_nodes = (*DEFAULT_NODES, H100_TWIN)
    last: tuple[PodView, ...] = ()
    for kept, start, count, nodes_change, other in generations:
        pods = [last[i % len(last)] for i in kept] if last else []
        pods += [JOB_POOL[i % len(JOB_POOL)] for i in range(start, start + count)]
        nodes = base_nodes
        if nodes_change == "drop-h100":
            nodes = tuple(n for n in nodes if n.name != "h100-1")
        elif nodes_change == "drop-a100":  # the only A100 node besides the MIG one: the type index too
            nodes = tuple(n for n in nodes if n.name != "a100-1")
        elif nodes_change == "hardware":  # h100-1 now says it is an H200 (labels stay: the index changes)
            nodes = tuple(n.model_copy(update={"accelerators": DEFAULT_NODES[0].accelerators})
                          if n.name == "h100-1" else n for n in nodes)
        elif nodes_change == "rebuild":
            nodes = tuple(n.model_copy() for n in nodes)
        inventory = Inventory(nodes=nodes, pods=tuple({id(p): p for p in pods}.values()),
                              namespace_labels=make_inventory().namespace_labels)
        used = OTHER_CATALOG if other else catalog
        assert finish_steps(memo.update_steps(inventory, used)) == job_types(inventory, used)
        last = inventory.pods


def test_pending_pods_of_a_job_change_type_with_the_type_index() -> None:
    """h100-1 turns out to be an H200 under its H100 labels: the pending pods pinned to the H100 label
    may now land on either (undecided), which JobTypes sees through the type index, not their node."""
    pinned = []
    for i in range(2):
        pod = worker(i, gpus="1")
        pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        pinned.append(pod)
    pods = make_inventory([*pinned, worker(5, node="a100-1")]).pods
    catalog, memo = make_context().catalog, JobTypes()
    relabelled = tuple(n.model_copy(update={"accelerators": DEFAULT_NODES[0].accelerators})
                       if n.name == "h100-1" else n for n in DEFAULT_NODES)
    for nodes, expected in ((DEFAULT_NODES, "nvidia-h100-80gb"), (relabelled, "nvidia-a100-80gb"),
                            (DEFAULT_NODES, "nvidia-h100-80gb")):
        inventory = Inventory(nodes=nodes, pods=pods)
        assert memo.update(inventory, catalog) == {("nlp", "llama"): expected}
        assert job_types(inventory, catalog) == {("nlp", "llama"): expected}
