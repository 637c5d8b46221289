"""POST /preempt: keep only candidates where evicting the proposed victims really makes the pod fit.

Both argument forms (Meta victims for nodeCacheCapable, full pods otherwise) answer in the Meta
form with the scheduler's victims unchanged (protocols.md 1.6); the core step is checked directly
for assumed binds.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from accel.capacity.devices import Assumption
from accel.capacity.inventory import Inventory, build_inventory
from accel.cluster.pods import parse_pod
from accel.placement.core import ExtenderCore
from extender.app import ROUTES, make_app
from extender.wire import ExtenderPreemptionResult
from kube.testing import ManualClock, make_namespace, make_node
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, inventory, named_gpu_pod, node_object, shared_example_policy

Json = dict[str, Any]


def no_teams(namespace: str) -> str | None:  # no namespace has a team
    return None


def mixed_node(name: str) -> Json:
    """An A100 node with 4 whole GPUs and 7 MIG 1g.10gb slices (mixed strategy)."""
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "nvidia.com/gpu.count": "5",
        "nvidia.com/mig.strategy": "mixed",
        "nvidia.com/mig-1g.10gb.count": "7",
    }
    allocatable = {"nvidia.com/gpu": "4", "nvidia.com/mig-1g.10gb": "7", "cpu": "64"}
    return make_node(name, labels=labels, allocatable=allocatable)


# Pods bound in the cluster: (name, node, units, resource).
BOUND = [
    ("big", "a100-full", 6, "nvidia.com/gpu"),
    ("small", "a100-full", 2, "nvidia.com/gpu"),
    ("whole", "mixed", 4, "nvidia.com/gpu"),
    ("slices", "mixed", 4, "nvidia.com/mig-1g.10gb"),
    ("h100-user", "h100", 8, "nvidia.com/gpu"),
    ("cordoned-user", "a100-cordoned", 8, "nvidia.com/gpu"),
]


def cluster() -> Inventory:
    nodes = [
        node_object("a100-full"),
        mixed_node("mixed"),
        node_object("h100", "nvidia-h100-80gb"),
        node_object("a100-cordoned", cordoned=True),
    ]
    pods = [
        named_gpu_pod(name, units, node=node, resource=resource, profile=None)
        for name, node, units, resource in BOUND
    ]
    return inventory(nodes, pods)


PREEMPTOR = named_gpu_pod("wants-3", 3)

# Candidate node -> victim UIDs the scheduler proposes; the map as kube-scheduler might send it.
CANDIDATES: dict[str, list[str]] = {
    "a100-full": ["uid-big"],  # frees 6 whole A100s: kept
    "mixed": ["uid-slices"],  # frees MIG slices, whole GPUs stay full: dropped
    "h100": ["uid-h100-user"],  # frees 8 GPUs of a type the profile does not allow: dropped
    "a100-cordoned": ["uid-cordoned-user"],  # cordoned: dropped
}
KEPT = ["a100-full"]


def meta_args(pod: Json, victims: dict[str, list[str]], pdb: int = 0) -> Json:
    meta = {n: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb} for n, uids in victims.items()}
    return {"Pod": pod, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta}


def full_args(pod: Json, victims: dict[str, list[str]]) -> Json:
    by_uid = {
        f"uid-{name}": named_gpu_pod(name, units, node=node, resource=resource)
        for name, node, units, resource in BOUND
    }
    full = {
        n: {"Pods": [by_uid.get(u) or {"metadata": {"uid": u}} for u in uids], "NumPDBViolations": 1}
        for n, uids in victims.items()
    }
    return {"Pod": pod, "NodeNameToVictims": full, "NodeNameToMetaVictims": None}


def meta_reply(victims: dict[str, list[str]], pdb: int = 0) -> Json:
    return {
        "NodeNameToMetaVictims": {
            n: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb} for n, uids in victims.items()
        }
    }


async def client_for(aiohttp_client: Any, state: ClusterState | None = None) -> TestClient[Any, Any]:
    app = make_app(
        state or ClusterState.static(shared_example_policy(), cluster()),
        metrics=Metrics(),
        clock=ManualClock(),
    )
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def preempt(client: TestClient[Any, Any], body: Json) -> Json:
    resp = await client.post("/preempt", json=body)
    assert resp.status == 200, await resp.text()
    reply: Json = await resp.json()
    ExtenderPreemptionResult.model_validate(reply)
    assert list(reply) == ["NodeNameToMetaVictims"]
    return reply


def test_preempt_is_a_route() -> None:
    assert "/preempt" in ROUTES


@pytest.mark.parametrize(
    ("victims", "kept"),
    [
        pytest.param(CANDIDATES, KEPT, id="only-the-node-freeing-whole-a100s"),
        pytest.param({"a100-full": ["uid-small"]}, [], id="victims-free-too-little"),
        pytest.param({"a100-full": ["uid-small", "uid-big"]}, ["a100-full"], id="two-victims-kept-in-order"),
        pytest.param({"mixed": ["uid-whole"]}, ["mixed"], id="mixed-node-whole-gpus-freed"),
        pytest.param({"mixed": ["uid-slices", "uid-whole"]}, ["mixed"], id="mixed-node-both-pools-freed"),
        # rule 4: a victim the extender has not seen may be another team's: no eviction on a guess
        pytest.param({"a100-full": ["uid-ghost", "uid-big"]}, [], id="unknown-uid-drops-the-node"),
        pytest.param({"a100-full": ["uid-ghost"]}, [], id="unknown-uid-frees-nothing"),
        pytest.param({"a100-full": ["uid-whole"]}, [], id="another-nodes-victim-frees-nothing-here"),
        pytest.param({"a100-full": []}, [], id="no-victims-dropped"),
        pytest.param({"not-in-cache": ["uid-big"]}, [], id="unknown-node-dropped"),
        pytest.param({"h100": ["uid-h100-user"], "a100-full": ["uid-big"]}, ["a100-full"], id="order-kept"),
    ],
)
async def test_meta_form_keeps_nodes_where_victims_make_room(
    aiohttp_client: Any, victims: dict[str, list[str]], kept: list[str]
) -> None:
    client = await client_for(aiohttp_client)
    reply = await preempt(client, meta_args(PREEMPTOR, victims, pdb=2))
    assert reply == meta_reply({n: victims[n] for n in kept}, pdb=2)
    assert list(reply["NodeNameToMetaVictims"]) == kept


async def test_full_pod_form_answers_in_meta_form(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    victims = {**CANDIDATES, "a100-full": ["uid-small", "uid-big"]}
    reply = await preempt(client, full_args(PREEMPTOR, victims))
    assert reply == meta_reply({"a100-full": ["uid-small", "uid-big"]}, pdb=1)


async def test_victims_are_returned_unchanged_when_teams_may_preempt_each_other(aiohttp_client: Any) -> None:
    state = ClusterState.static(example_policy(crossTeamPreemption=True), cluster())
    client = await client_for(aiohttp_client, state)
    victims = {**CANDIDATES, "a100-full": ["uid-small", "uid-ghost", "uid-big"]}
    reply = await preempt(client, full_args(PREEMPTOR, victims))
    assert reply == meta_reply({"a100-full": ["uid-small", "uid-ghost", "uid-big"]}, pdb=1)


def two_teams(victim_namespace: str, *, cross_team: bool = False) -> tuple[ExtenderCore, Any, Any]:
    """An A100 node full with a 6-GPU pod in `victim_namespace`; the preemptor (3 GPUs) is in
    namespace `nlp-ns` of team nlp; `vision-ns` belongs to team vision, `loose-ns` to no team."""
    parsed = example_policy(crossTeamPreemption=cross_team)
    namespaces = [
        make_namespace("nlp-ns", labels={"team": "nlp"}),
        make_namespace("vision-ns", labels={"team": "vision"}),
        make_namespace("loose-ns"),
    ]
    pods = [
        named_gpu_pod("big", 6, node="a100-full", ns=victim_namespace, profile=None),
        named_gpu_pod("small", 2, node="a100-full", ns="nlp-ns", profile=None),
    ]
    built = build_inventory(
        [node_object("a100-full")], pods, namespaces, catalog=parsed.catalog, policy=parsed.policy
    )
    core = ExtenderCore()
    index = core.index(1, parsed.policy, built)
    req = core.request(parse_pod(named_gpu_pod("wants-3", 3, ns="nlp-ns")), index, 0.0)
    return core, index, (req, partial(built.team_of, team_label="team"))


@pytest.mark.parametrize(("victim_namespace", "cross_team", "kept"), [
    pytest.param("nlp-ns", False, ["a100-full"], id="own-team-victim"),
    pytest.param("vision-ns", False, [], id="another-teams-victim"),
    pytest.param("loose-ns", False, [], id="team-less-victim"),
    pytest.param("vision-ns", True, ["a100-full"], id="another-teams-victim-when-the-policy-allows"),
])  # fmt: skip
def test_a_pod_preempts_only_its_own_teams_pods(
    victim_namespace: str, cross_team: bool, kept: list[str]
) -> None:
    # issue 21: a PriorityClass is the author's choice (any namespace may name any class), so it
    # must not let one team evict another's GPU pods (accel.placement.preempt rule 4).
    core, index, (req, team_of) = two_teams(victim_namespace, cross_team=cross_team)
    assert core.preempt(index, req, {"a100-full": ["uid-big"]}, team_of) == kept
    if not kept:
        reason = core.preempt_verdict(index, req, "a100-full", ["uid-big"], team_of).reason
        assert f"{victim_namespace}/big" in reason and "preemptor's team nlp" in reason, reason


async def test_time_sliced_pod_is_not_helped_by_whole_gpu_victims(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    mig_pod = named_gpu_pod("wants-slices", 5, resource="nvidia.com/mig-1g.10gb", profile=None)
    reply = await preempt(client, meta_args(mig_pod, {"mixed": ["uid-whole"]}))
    assert reply == meta_reply({})
    reply = await preempt(client, meta_args(mig_pod, {"mixed": ["uid-slices"]}))
    assert reply == meta_reply({"mixed": ["uid-slices"]})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(
            {"Pod": {}, "NodeNameToVictims": None, "NodeNameToMetaVictims": None},
            "both are null",
            id="no-victims-map",
        ),
        pytest.param({"NodeNameToMetaVictims": {}}, "Pod", id="no-pod"),
        pytest.param(
            {"Pod": {}, "NodeNameToMetaVictims": {"n": {"Pods": [{}]}}}, "UID", id="meta-pod-without-uid"
        ),
        pytest.param(
            {"Pod": {}, "NodeNameToMetaVictims": {"n": {"Pods": "x"}}}, "Pods", id="pods-not-a-list"
        ),
        pytest.param(
            {"Pod": {}, "NodeNameToVictims": {"n": {"Pods": [{"metadata": {}}]}}},
            "metadata.uid",
            id="full-pod-without-uid",
        ),
    ],
)
async def test_malformed_args_answer_400_with_reason(aiohttp_client: Any, body: Json, needle: str) -> None:
    client = await client_for(aiohttp_client)
    resp = await client.post("/preempt", json=body)
    assert resp.status == 400
    assert needle in (resp.reason or "") + await resp.text()


async def test_not_json_answers_400(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    resp = await client.post("/preempt", data=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status == 400


async def test_not_ready_answers_an_empty_map_and_counts_an_error(aiohttp_client: Any) -> None:
    state = ClusterState(catalog=shared_example_policy().catalog, namespace="accel-system")
    client = await client_for(aiohttp_client, state)
    assert await preempt(client, meta_args(PREEMPTOR, CANDIDATES)) == meta_reply({})
    metrics = await (await client.get("/metrics")).text()
    assert 'accel_extender_requests_total{result="error",verb="preempt"} 1.0' in metrics


async def test_requests_are_counted_by_verb(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    await preempt(client, meta_args(PREEMPTOR, CANDIDATES))
    await client.post("/preempt", json={"Pod": {}})
    metrics = await (await client.get("/metrics")).text()
    assert 'accel_extender_requests_total{result="ok",verb="preempt"} 1.0' in metrics
    assert 'accel_extender_requests_total{result="error",verb="preempt"} 1.0' in metrics


def test_assumed_binds_count_unless_they_are_victims_or_the_preemptor() -> None:
    core = ExtenderCore()
    policy = shared_example_policy().policy
    index = core.index(1, policy, cluster())
    req = core.request(parse_pod(PREEMPTOR), index, 0.0)
    # 6 GPUs freed by "big", but an in-flight bind holds 5 of them: the pod (3) no longer fits.
    core.state.assumptions.assume(
        Assumption("uid-other", "team-a/other", "a100-full", {"nvidia.com/gpu": (2, 3, 4, 5, 6)}, 100.0)
    )
    assert core.preempt(index, req, {"a100-full": ["uid-big"]}, no_teams) == []
    assert "only 1 of 8" in core.preempt_verdict(index, req, "a100-full", ["uid-big"], no_teams).reason
    # The same bind is ignored when it is a victim's, or the preemptor's own.
    assert core.preempt(index, req, {"a100-full": ["uid-big", "uid-other"]}, no_teams) == ["a100-full"]
    core.state.assumptions.forget("uid-other")
    core.state.assumptions.assume(
        Assumption("uid-wants-3", "team-a/wants-3", "a100-full", {"nvidia.com/gpu": (2, 3, 4, 5, 6)}, 100.0)
    )
    assert core.preempt(index, req, {"a100-full": ["uid-big"]}, no_teams) == ["a100-full"]
