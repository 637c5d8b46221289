"""A job's leaf hold is capped by its team's quota (issue 21 residual, accel.placement.state rule 3).

`accel.dev/job-size` (and Kueue's / JobSet's size keys) are the pod author's. After a job's first
pod binds, its leaf is held for the job's other pods: other pods score low there. Before the cap, a
team could declare a size its quota could never admit and hold leaves other teams then lose. Now a
hold waits for no more pods than exist unplaced plus what the team's quota still admits.
Scenarios go through the extender's endpoints as kube-scheduler calls them.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from accel.capacity.inventory import build_inventory
from accel.placement.state import JobQuota, pods_quota_admits
from accel.policy.models import Team
from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock, make_namespace
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, named_gpu_pod, node_object
from tests.unit.test_placement import args, post, schedule

A100 = "nvidia-a100-80gb"
Json = dict[str, Any]


def job_pod(name: str, size: int, *, ns: str = "team-a") -> Json:
    return named_gpu_pod(name, 4, ns=ns, labels={"accel.dev/job": "train"},
                         annotations={"accel.dev/job-size": str(size)})


async def lone_pod_scores(
    aiohttp_client: Any, quota: dict[str, int], *, size: int = 3, pending: int = 1, gated: bool = False
) -> dict[str, int]:
    """Bind the first pod of a `size`-pod job of team-a (quota `quota`; `pending` of its pods exist,
    unbound; the others `gated` from scheduling), then score a lone 1-GPU pod of another team on
    a1 (another leaf) and b1 (the job's leaf l2, where the job's other pods fit)."""
    policy = example_policy(teams=[
        {"name": "nlp", "quota": quota},
        {"name": "vision", "quota": {"*": 8}},
    ])
    job = [job_pod(f"w{i}", size) for i in range(pending)]
    for pod in job[1:] if gated else ():
        pod["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    other = named_gpu_pod("solo", 1, ns="team-b")
    busy = named_gpu_pod("busy", 4, node="b2", ns="team-b")
    nodes = [node_object("a1", leaf="l1", spine="s1"), node_object("b1", leaf="l2", spine="s1"),
             node_object("b2", leaf="l2", spine="s1")]
    namespaces = [make_namespace("team-a", labels={"team": "nlp"}),
                  make_namespace("team-b", labels={"team": "vision"})]
    cluster = FakeCluster()
    for pod in [*job, other]:
        cluster.apply(pod)
    snapshot = build_inventory(nodes, [busy, *job], namespaces, catalog=policy.catalog, policy=policy.policy)
    state = ClusterState.static(policy, snapshot)
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    first, _ = await schedule(client, job[0], ["a1", "b1", "b2"])
    assert first == "b2"  # exact fit inside the leaf that holds the job
    return {s["Host"]: s["Score"] for s in await post(client, "/prioritize", args(other, ["a1", "b1"]))}


async def test_a_real_job_within_its_quota_keeps_its_leaf_held(aiohttp_client: Any) -> None:
    scores = await lone_pod_scores(aiohttp_client, {A100: 12, "*": 12})
    assert scores["a1"] > scores["b1"]  # b1 keeps room for the job's two other 4-GPU pods


async def test_a_declared_size_beyond_the_quota_holds_no_leaf(aiohttp_client: Any) -> None:
    # quota 4 A100: the 4-GPU pod just bound is all the team may have, so "job-size 3" is a lie
    scores = await lone_pod_scores(aiohttp_client, {A100: 4, "*": 40})
    assert scores["a1"] == scores["b1"]


async def test_the_hold_waits_only_for_the_pods_the_quota_still_admits(aiohttp_client: Any) -> None:
    # room for one more 4-GPU pod: b1 still fits it after the lone pod takes a GPU, so it is not held
    scores = await lone_pod_scores(aiohttp_client, {A100: 8, "*": 40})
    assert scores["a1"] == scores["b1"]


async def test_pods_of_the_job_that_already_exist_are_held_for_even_with_the_quota_full(
    aiohttp_client: Any,
) -> None:
    # all 3 pods admitted (the quota counts them): the 2 still pending are the job's, not a forgery
    scores = await lone_pod_scores(aiohttp_client, {A100: 12, "*": 12}, pending=3)
    assert scores["a1"] > scores["b1"]


async def test_pods_of_the_job_that_may_not_be_scheduled_yet_are_not_held_for(aiohttp_client: Any) -> None:
    # e.g. pods Kueue never admits (a kueueManaged team's quota is Kueue's, not accel's): made only
    # to be counted, they stay gated and hold nothing
    scores = await lone_pod_scores(aiohttp_client, {A100: 4, "*": 40}, pending=3, gated=True)
    assert scores["a1"] == scores["b1"]


def team(quota: dict[str, int]) -> Team:
    return Team.model_validate({"name": "nlp", "quota": quota})


@pytest.mark.parametrize(
    ("quota", "usage", "charged", "expected"),
    [
        ({A100: 12, "*": 40}, {"": Fraction(4)}, "", 2),  # undecided now: the type line takes it at bind
        ({A100: 12, "*": 40}, {A100: Fraction(4)}, A100, 2),  # charged as A100 already: not twice
        ({A100: 12, "*": 6}, {A100: Fraction(4)}, A100, 0),  # the "*" line is full first
        ({"*": 10}, {"": Fraction(4)}, "", 1),  # no A100 line: "*" alone
        ({"nvidia-h100-80gb": 4}, {"": Fraction(4)}, "", None),  # no line for A100 nor "*": no cap
    ],
)
def test_pods_quota_admits(
    quota: dict[str, int], usage: dict[str, Fraction], charged: str, expected: int | None
) -> None:
    assert pods_quota_admits(JobQuota(team(quota), usage, charged, Fraction(4)), A100) == expected


def test_no_team_means_no_cap_and_kueue_pods_get_none_beyond_those_that_exist() -> None:
    assert pods_quota_admits(JobQuota(None, {}, "", Fraction(4)), A100) is None
    queued = JobQuota(team({A100: 100}), {}, "", Fraction(4), queued=True)
    assert pods_quota_admits(queued, A100) == 0
