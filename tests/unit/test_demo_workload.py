"""The demo's seeded workload: deterministic, exact count, every kind well-formed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from accel.cluster.pods import parse_pod
from accel.policy.loading import parse_policy
from cli.demo_workload import (
    JOB_LABEL,
    MIX,
    PLAIN_GPU,
    PROFILE_ANNOTATION,
    generate_workload,
    pod_manifest,
)
from cli.state import read_policy_files

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_day_other_seed_other_day() -> None:
    assert generate_workload(seed=1, count=200) == generate_workload(seed=1, count=200)
    assert generate_workload(seed=1, count=200) != generate_workload(seed=2, count=200)


@pytest.mark.parametrize("count", [0, 1, 7, 150], ids=lambda n: f"{n}-pods")
def test_count_is_exact_and_names_unique(count: int) -> None:
    pods = generate_workload(seed=5, count=count)
    assert len(pods) == count
    assert len({p.key for p in pods}) == count


def test_sorted_by_arrival_within_the_day() -> None:
    pods = generate_workload(seed=9, count=300, day_hours=10.0)
    arrivals = [p.arrival_h for p in pods]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] >= 0.0 and arrivals[-1] <= 10.0
    assert all(p.duration_h > 0 for p in pods)


def test_every_kind_appears_in_a_day() -> None:
    kinds = Counter(p.kind for p in generate_workload(seed=7, count=500))
    assert set(kinds) == set(MIX)


def test_gang_members_share_job_label_arrival_and_shape() -> None:
    pods = [p for p in generate_workload(seed=7, count=500) if p.kind == "gang"]
    jobs: dict[str, list[float]] = {}
    for pod in pods:
        assert pod.labels[JOB_LABEL] == pod.job and pod.gpus == 8 and pod.profile == "large-any"
        jobs.setdefault(str(pod.job), []).append(pod.arrival_h)
    assert jobs and all(len(set(arrivals)) == 1 for arrivals in jobs.values())
    assert all(2 <= len(arrivals) <= 4 for arrivals in jobs.values())


def test_missing_labels_pods_lack_user_and_others_have_all_required() -> None:
    for pod in generate_workload(seed=7, count=400):
        has_user = "user" in pod.labels
        assert has_user == (pod.kind != "missing-labels"), pod
        assert pod.labels["team"] == pod.team and "job_type" in pod.labels


def test_profiles_named_exist_in_the_sample_policy() -> None:
    from accel.cluster.catalog import load_builtin_catalog

    policy = parse_policy(read_policy_files(ROOT / "examples/policy"), load_builtin_catalog()).policy
    names = {p.profile for p in generate_workload(seed=7, count=500) if p.profile}
    assert names <= set(policy.profile_names)


@pytest.mark.parametrize(
    ("kind", "gpu_request"),
    [("training", True), ("cpu", False), ("notebook", True)],
    ids=["gpu-pod-plain-request", "cpu-pod-no-gpu", "notebook-plain-request-webhook-renames"],
)
def test_manifest_is_a_defaulted_pod_with_a_plain_request(kind: str, gpu_request: bool) -> None:
    pod = next(p for p in generate_workload(seed=7, count=300) if p.kind == kind)
    obj = pod_manifest(pod)
    assert obj["kind"] == "Pod" and obj["metadata"]["namespace"] == f"team-{pod.team}"
    assert obj["spec"]["schedulerName"] == "default-scheduler"
    resources = obj["spec"]["containers"][0]["resources"]
    assert (PLAIN_GPU in resources["requests"]) == gpu_request
    assert resources["requests"].get(PLAIN_GPU) == resources["limits"].get(PLAIN_GPU)
    assert parse_pod(obj).accelerators == ({PLAIN_GPU: pod.gpus} if gpu_request else {})
    assert obj["metadata"]["annotations"].get(PROFILE_ANNOTATION) == pod.profile


def test_negative_count_is_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        generate_workload(seed=1, count=-1)
