"""Pods of one multi-node job keep one accelerator type (accel.admission.plan rule 7,
accel.admission.jobs)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import jsonpatch
import pytest

from accel.admission.jobs import job_types
from accel.admission.plan import mutate
from accel.admission.validate import plan_validation
from accel.quota.ledger import LEDGER_KEY, Ledger, Reservation
from tests.builders import gpu_pod, make_context, make_inventory

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
