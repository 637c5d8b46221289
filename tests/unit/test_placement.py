"""Placement: jobs kept on one leaf, scarce types kept for the pods that need them, every bind explained.

Table tests per component (accel.cluster.job_intent, accel.placement.score), scenario tests through the
extender's real endpoints on a static snapshot, and properties of the combined score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.cluster.job_intent import JobIntent, declared_size, job_intent, job_key, level_of_label
from accel.placement.score import (
    COMPONENTS,
    HELD_SHARE,
    PLACEMENT_ANNOTATION,
    ExplanationError,
    combine,
    explain,
    parse_explanation,
    room_levels,
    scarcity_raw,
)
from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy

Json = dict[str, Any]

# ---- table tests: job intent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "annotations", "size"),
    [
        ({}, {}, 0),
        ({"accel.dev/job-size": "3"}, {}, 3),
        ({}, {"accel.dev/job-size": "4"}, 4),
        ({}, {"kueue.x-k8s.io/pod-group-total-count": "5"}, 5),
        ({"jobset.sigs.k8s.io/replicatedjob-replicas": "2"}, {"accel.dev/job-size": "6"}, 6),
        ({"accel.dev/job-size": "three"}, {}, 0),  # not a number: ignored
        ({"accel.dev/job-size": "0"}, {}, 0),
        ({"accel.dev/job-size": "999999"}, {}, 0),  # over MAX_JOB_SIZE: ignored, not trusted
    ],
)
def test_declared_job_size(labels: dict[str, str], annotations: dict[str, str], size: int) -> None:
    assert declared_size(labels, annotations) == size


@pytest.mark.parametrize(
    ("label", "level"),
    [
        ("network.topology.nvidia.com/leaf", "leaf"),
        ("cloud.google.com/gce-topology-subblock", "leaf"),
        ("cloud.google.com/gce-topology-block", "spine"),
        ("topology.kubernetes.io/zone", "zone"),
        ("topology.kubernetes.io/region", "zone"),
        ("kubernetes.io/hostname", "node"),
        ("example.com/rack", "leaf"),
    ],
)
def test_kueue_topology_label_maps_to_a_level(label: str, level: str) -> None:
    assert level_of_label(label) == level


def test_required_topology_wins_over_preferred() -> None:
    notes = {
        "kueue.x-k8s.io/podset-required-topology": "cloud.google.com/gce-topology-block",
        "kueue.x-k8s.io/podset-preferred-topology": "network.topology.nvidia.com/leaf",
    }
    assert job_intent({}, notes) == JobIntent(0, "spine", True)
    assert job_intent(
        {}, {"kueue.x-k8s.io/podset-preferred-topology": "topology.kubernetes.io/zone"}
    ) == JobIntent(0, "zone", False)


@pytest.mark.parametrize(
    "label",
    [
        "accel.dev/job",
        "training.kubeflow.org/job-name",
        "jobset.sigs.k8s.io/jobset-name",
        "volcano.sh/job-name",
        "scheduling.x-k8s.io/pod-group",
        "kueue.x-k8s.io/pod-group-name",
    ],
)
def test_every_job_label_names_a_job(label: str) -> None:
    assert job_key("ns", {label: "j"}) == ("ns", "j")


# ---- table tests: scarcity, room, combine ---------------------------------------------------------


def test_scarcity_prefers_the_cheap_plentiful_type() -> None:
    prices = {"h200": 10.0, "a100": 4.0, "l4": 1.0}
    free = {"h200": 8.0, "a100": 8.0, "l4": 16.0}
    raw = scarcity_raw(["h200", "a100", "l4", "l4"], prices, free)
    assert raw["l4"] == 10.0
    assert raw["l4"] > raw["a100"] > raw["h200"]


def test_scarcity_is_flat_for_one_type_and_neutral_without_prices() -> None:
    assert scarcity_raw(["a100", "a100"], {}, {"a100": 8.0}) == {"a100": 0.0}
    raw = scarcity_raw(["x", "y"], {}, {"x": 1.0, "y": 4.0})
    assert raw["y"] > raw["x"]  # no prices: plenty alone decides


def test_room_levels_scores_the_leaf_that_holds_the_whole_job() -> None:
    # (leaf, spine, zone) ids; leaf 0 has room for 2 pods, leaf 1 for 3, both on spine 0.
    levels = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0], [2, 1, 0]])
    slots = np.array([2.0, 2.0, 1.0, 0.0])
    assert room_levels(levels, slots, 3).tolist() == [6.0, 10.0, 10.0, 0.0]
    assert room_levels(levels, slots, 6).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert room_levels(levels, slots, 5).tolist() == [6.0, 6.0, 6.0, 0.0]


def test_flat_components_do_not_squeeze_the_range() -> None:
    known = np.ones(3, dtype=bool)
    parts = {
        "preference": np.full(3, 10.0),
        "fragmentation": np.array([0.0, 5.0, 10.0]),
        "topology": np.zeros(3),
    }
    combined = combine(parts, {"preference": 3, "fragmentation": 2, "topology": 2}, known)
    assert combined.scores.tolist() == [0, 5, 10]
    assert combined.contributions["preference"].tolist() == [0.0, 0.0, 0.0]


def test_job_topology_dominates_every_other_component() -> None:
    known = np.ones(2, dtype=bool)
    parts = {"preference": np.array([10.0, 0.0]), "fragmentation": np.array([10.0, 0.0]),
             "scarcity": np.array([10.0, 0.0]), "topology": np.array([0.0, 10.0])}
    weights = {"preference": 3, "fragmentation": 2, "topology": 2, "scarcity": 4}
    combined = combine(parts, weights, known, dominant="topology")
    assert combined.scores[1] > combined.scores[0]


def test_held_nodes_keep_a_fraction_of_their_score() -> None:
    known = np.ones(2, dtype=bool)
    parts = {"fragmentation": np.array([10.0, 0.0])}
    combined = combine(parts, {"fragmentation": 1}, known, held=np.array([True, False]))
    assert combined.scores.tolist() == [round(10 * HELD_SHARE), 0]
    assert combined.reservation[0] == pytest.approx(-10 * (1 - HELD_SHARE))


def test_explanation_round_trips_and_bad_annotations_are_reported() -> None:
    known = np.ones(2, dtype=bool)
    combined = combine({"fragmentation": np.array([10.0, 2.0])}, {"fragmentation": 1}, known)
    found = explain(["a", "b"], combined, "a", "nvidia-l4-24gb", job="ns/j")
    assert (found.runner_up, found.runner_up_score, found.score) == ("b", 2, 10)
    again = parse_explanation(found.to_annotation())
    assert again.node == "a" and again.runner_up == "b" and again.job == "ns/j"
    assert "runner-up b scored 2" in found.message()
    for bad in ("", "{", "[]", '{"node": "a"}', '{"node": "a", "score": "x", "components": {}}'):
        with pytest.raises(ExplanationError, match=PLACEMENT_ANNOTATION):
            parse_explanation(bad)


# ---- properties -------------------------------------------------------------------------------

column = st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    weights=st.fixed_dictionaries({c: st.floats(0, 10, allow_nan=False) for c in COMPONENTS}),
    dominant=st.sampled_from([None, "topology"]),
)
def test_scores_are_in_range_deterministic_and_explained_exactly(
    data: st.DataObject, weights: dict[str, float], dominant: str | None
) -> None:
    size = data.draw(st.integers(1, 12))
    parts = {
        c: np.array(data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=size, max_size=size)))
        for c in COMPONENTS
    }
    known = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    held = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    first = combine(parts, weights, known, dominant=dominant, held=held)
    second = combine(parts, weights, known, dominant=dominant, held=held)
    assert ((first.scores >= 0) & (first.scores <= 10)).all()
    assert first.scores.tolist() == second.scores.tolist()
    names = [f"n{i}" for i in range(size)]
    for i, name in enumerate(names):
        if known[i]:
            found = explain(names, first, name, "t")
            assert found.total() == pytest.approx(found.score, abs=1e-9)
            assert found.score == int(first.scores[i])


# ---- scenarios through the extender's endpoints ----------------------------------------------------


def args(pod: Json, names: list[str]) -> Json:
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


async def post(client: TestClient[Any, Any], path: str, body: Json) -> Any:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def schedule(client: TestClient[Any, Any], pod: Json, names: list[str]) -> tuple[str, dict[str, int]]:
    """kube-scheduler's part, as it would do it: filter, prioritize, take the best score, bind."""
    passed = (await post(client, "/filter", args(pod, names)))["NodeNames"]
    scores = {s["Host"]: s["Score"] for s in await post(client, "/prioritize", args(pod, passed))}
    best = max(passed, key=lambda n: (scores[n], -passed.index(n)))
    meta = pod["metadata"]
    bind = {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": best}
    assert await post(client, "/bind", bind) == {"Error": ""}
    return best, scores


def job_pod(name: str, job: str = "train", size: int | None = 3, gpus: int = 4) -> Json:
    notes = {"accel.dev/job-size": str(size)} if size else {}
    return named_gpu_pod(name, gpus, profile="a100-80gb", labels={"accel.dev/job": job}, annotations=notes)


def two_leaves() -> list[Json]:
    """Leaf l1 can hold two 4-GPU pods, leaf l2 three (b2 has 4 of 8 GPUs taken)."""
    return [
        node_object("a1", leaf="l1", spine="s1"),
        node_object("b1", leaf="l2", spine="s1"),
        node_object("b2", leaf="l2", spine="s1"),
    ]


def used(node: str, gpus: int, name: str = "busy") -> Json:
    return named_gpu_pod(f"{name}-{node}", gpus, node=node, ns="other")


@pytest.mark.parametrize("declared", [True, False], ids=["size-declared", "size-from-pending-pods"])
async def test_three_pod_job_lands_on_the_one_leaf_that_holds_it(aiohttp_client: Any, declared: bool) -> None:
    pods = [job_pod(f"w{i}", size=3 if declared else None) for i in range(3)]
    cluster = FakeCluster()
    for pod in pods:
        cluster.apply(pod)
    bound = [used("b2", 4)]
    snapshot = inventory(two_leaves(), bound + ([] if declared else pods))
    state = ClusterState.static(shared_example_policy(), snapshot)
    client = await aiohttp_client(
        make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock(), events=cluster)
    )
    names = ["a1", "b1", "b2"]
    first, scores = await schedule(client, pods[0], names)
    assert first in ("b1", "b2"), scores  # a1 alone would be the best fit, but its leaf holds only 2 pods
    placed = [first] + [(await schedule(client, pod, names))[0] for pod in pods[1:]]
    assert sorted(placed) == ["b1", "b1", "b2"]


async def test_job_leaf_is_held_for_its_remaining_pods_until_the_ttl(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    job = [job_pod(f"w{i}") for i in range(3)]
    other = named_gpu_pod("solo", 1, profile="a100-80gb")
    for pod in [*job, other]:
        cluster.apply(pod)
    clock = ManualClock()
    state = ClusterState.static(shared_example_policy(), inventory(two_leaves(), [used("b2", 4)]))
    client = await aiohttp_client(
        make_app(state, metrics=Metrics(), binder=cluster, clock=clock, events=cluster)
    )
    first, _ = await schedule(client, job[0], ["a1", "b1", "b2"])
    assert first == "b2"  # exact fit inside the leaf that holds the job
    # b1 must keep room for the job's two other 4-GPU pods; a lone 1-GPU pod is steered to a1.
    scores = {s["Host"]: s["Score"] for s in await post(client, "/prioritize", args(other, ["a1", "b1"]))}
    assert scores["a1"] > scores["b1"]
    clock.advance(shared_example_policy().policy.settings.scoring.job_hold_ttl_seconds + 1)
    scores = {s["Host"]: s["Score"] for s in await post(client, "/prioritize", args(other, ["a1", "b1"]))}
    assert scores["a1"] == scores["b1"]  # the hold expired: both nodes are alike again


async def test_generic_pod_takes_the_cheap_gpu_and_leaves_the_premium_one(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("any", 1, profile="gpu-any")
    cluster.apply(pod)
    nodes = [
        node_object("h200", "nvidia-h200-141gb"),
        node_object("l4", "nvidia-l4-24gb"),
        node_object("a100"),
    ]
    state = ClusterState.static(shared_example_policy(), inventory(nodes))
    client = await aiohttp_client(
        make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock(), events=cluster)
    )
    chosen, scores = await schedule(client, pod, ["h200", "l4", "a100"])
    assert chosen == "l4"
    assert scores["l4"] == 10 and scores["h200"] == min(scores.values()) and scores["h200"] < scores["a100"]
    notes = cluster.get("pods", "any", "team-a")["metadata"]["annotations"]  # type: ignore[index]
    found = parse_explanation(notes[PLACEMENT_ANNOTATION])
    assert found.node == "l4" and found.accelerator_type == "nvidia-l4-24gb" and found.score == 10
    assert found.runner_up == "a100" and found.runner_up_score == scores["a100"]
    assert found.components["scarcity"] > 0
    assert found.total() == pytest.approx(found.score)
    [event] = [e for e in cluster.events if e["reason"] == "AcceleratorPlaced"]
    assert event["involvedObject"]["name"] == "any" and event["reportingComponent"] == "accel-extender"
    assert "placed on l4" in event["message"] and "runner-up a100" in event["message"]


async def test_exact_fit_four_gpu_pod_scores_above_an_empty_node(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("four", 4)
    cluster.apply(pod)
    state = ClusterState.static(
        shared_example_policy(), inventory([node_object("empty"), node_object("half")], [used("half", 4)])
    )
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    chosen, scores = await schedule(client, pod, ["empty", "half"])
    assert chosen == "half" and scores == {"half": 10, "empty": 0}


async def test_pod_that_only_allows_the_premium_type_still_gets_it(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("premium", 1, profile="premium-h200")
    cluster.apply(pod)
    nodes = [node_object("h200", "nvidia-h200-141gb"), node_object("l4", "nvidia-l4-24gb")]
    state = ClusterState.static(shared_example_policy(), inventory(nodes))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    chosen, _ = await schedule(client, pod, ["h200", "l4"])
    assert chosen == "h200"


async def test_a_lone_candidate_is_explained_without_a_runner_up(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("lone", 1)
    cluster.apply(pod)
    state = ClusterState.static(shared_example_policy(), inventory([node_object("n")]))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    await post(client, "/filter", args(pod, ["n"]))  # kube-scheduler skips prioritize for one node
    assert await post(
        client, "/bind", {"PodName": "lone", "PodNamespace": "team-a", "PodUID": "uid-lone", "Node": "n"}
    ) == {"Error": ""}
    found = parse_explanation(
        cluster.get("pods", "lone", "team-a")["metadata"]["annotations"][PLACEMENT_ANNOTATION]
    )  # type: ignore[index]
    assert found.node == "n" and found.runner_up is None and found.total() == pytest.approx(found.score)


def test_premium_index_weighs_price_and_throughput() -> None:
    catalog = shared_example_policy().catalog
    prices = {t.name: p for t in catalog if (p := t.price_per_gpu_hour) is not None}
    tflops = {t.name: f for t in catalog if (f := t.dense_tflops) is not None}
    raw = scarcity_raw(["nvidia-h200-141gb", "nvidia-a100-80gb", "nvidia-l4-24gb"], prices, {}, tflops)
    assert raw["nvidia-l4-24gb"] > raw["nvidia-a100-80gb"] > raw["nvidia-h200-141gb"]


def test_scarcity_never_overrules_the_profiles_own_order() -> None:
    known = np.ones(2, dtype=bool)
    parts = {"preference": np.array([10.0, 0.0]), "scarcity": np.array([0.0, 10.0])}
    combined = combine(parts, {"preference": 1, "scarcity": 10}, known)
    assert combined.scores.tolist() == [10, 0]


# ---- accel explain ------------------------------------------------------------------------------


def _snapshot(tmp_path: Any, *pods: Json) -> str:
    import json

    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(pods)}))
    return str(path)


async def test_accel_explain_prints_the_annotation_of_a_real_bind(
    aiohttp_client: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    cluster = FakeCluster()
    pod = named_gpu_pod("any", 1, profile="gpu-any")
    cluster.apply(pod)
    nodes = [node_object("h200", "nvidia-h200-141gb"), node_object("l4", "nvidia-l4-24gb")]
    state = ClusterState.static(shared_example_policy(), inventory(nodes))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    await schedule(client, pod, ["h200", "l4"])
    snap = _snapshot(tmp_path, cluster.get("pods", "any", "team-a"), named_gpu_pod("plain", 1, node="l4"))
    assert main(["explain", "team-a/any", "--snapshot", snap]) == 0
    out = capsys.readouterr().out
    assert "team-a/any on l4 (nvidia-l4-24gb): score 10 of 10" in out
    assert "scarcity" in out and "runner-up: h200 scored 0" in out
    assert main(["explain", "any", "-n", "team-a", "--snapshot", snap, "-o", "json"]) == 0
    assert '"runnerUp"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (
            named_gpu_pod("plain", 1, node="l4"),
            "has no accel.dev/placement annotation: it is on l4, bound by something other",
        ),
        (named_gpu_pod("plain", 1), "it is not bound yet"),
        (
            named_gpu_pod("plain", 1, annotations={PLACEMENT_ANNOTATION: "{oops"}),
            "is not a placement explanation",
        ),
    ],
)
def test_accel_explain_says_why_there_is_nothing_to_explain(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], pod: Json, message: str
) -> None:
    from cli.main import main

    snap = _snapshot(tmp_path, pod)
    assert main(["explain", "team-a/plain", "--snapshot", snap]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main(["explain", "team-a/missing", "--snapshot", snap]) == 1
    assert "no pod team-a/missing" in capsys.readouterr().err


# ---- demo measurements ------------------------------------------------------------------------------


def test_leaf_room_counts_whole_pods_per_leaf() -> None:
    from cli.demo_summary import leaf_has_room

    snapshot = inventory(two_leaves(), [used("b2", 4)])
    assert leaf_has_room(snapshot, ["a1", "b1", "b2"], "nvidia.com/gpu", 4, 3)  # leaf l2: 2 + 1 pods
    assert not leaf_has_room(snapshot, ["a1", "b1"], "nvidia.com/gpu", 4, 3)  # b2 filtered out
    assert not leaf_has_room(snapshot, ["a1", "b1", "b2"], "nvidia.com/gpu", 8, 2)


@pytest.mark.parametrize(
    ("chosen", "free", "order", "expected"),
    [
        ("nvidia-l4-24gb", ["nvidia-h200-141gb"], (), (False, False)),
        ("nvidia-h200-141gb", ["nvidia-l4-24gb"], (), (True, False)),
        ("nvidia-h200-141gb", ["nvidia-a100-80gb"], ("nvidia-h200-141gb", "nvidia-a100-80gb"), (True, True)),
        ("nvidia-h200-141gb", [], (), (False, False)),
    ],
)
def test_cheaper_type_free(
    chosen: str, free: list[str], order: tuple[str, ...], expected: tuple[bool, bool]
) -> None:
    from cli.demo_summary import cheaper_type_free

    assert cheaper_type_free(chosen, free, order, shared_example_policy().catalog) == expected


def test_premium_use_and_job_leaf_target() -> None:
    from fractions import Fraction

    from cli.demo_summary import PodOutcome, job_leaf_target, premium_use

    def out(name: str, **kw: Any) -> PodOutcome:
        return PodOutcome(
            name=name,
            team="t",
            kind="k",
            profile="p",
            admitted=True,
            node="n",
            gpus=Fraction(2),
            started_h=0.0,
            finished_h=1.5,
            **kw,
        )

    outcomes = [
        out("a", cheaper_free=True),
        out("b", cheaper_free=True, order_chose=True),
        out("c", cheaper_free=False),
        out("j1", job="j", leaf="l1", leaf_room=True),
        out("j2", job="j", leaf="l1"),
        out("k1", job="k", leaf="l1", leaf_room=False),
        out("k2", job="k", leaf="l2"),
    ]
    use = premium_use(outcomes)
    assert (use.multi_type_hours, use.while_cheaper_free, use.by_profile_order, use.against_policy) == (
        9.0,
        6.0,
        3.0,
        3.0,
    )
    target = job_leaf_target(outcomes)
    assert (target.one_leaf, target.had_room, target.one_leaf_of_those, target.jobs) == (1, 1, 1, 2)


# ---- Kueue required topology ------------------------------------------------------------------------


def required_pod(name: str, size: int = 3) -> Json:
    notes = {"kueue.x-k8s.io/podset-required-topology": "network.topology.nvidia.com/leaf",
             "kueue.x-k8s.io/pod-group-total-count": str(size)}
    return named_gpu_pod(
        name, 4, profile="a100-80gb", labels={"kueue.x-k8s.io/pod-group-name": "tas"}, annotations=notes
    )


async def test_required_topology_filters_to_the_leaf_that_holds_the_job(aiohttp_client: Any) -> None:
    pods = [required_pod(f"r{i}") for i in range(3)]
    cluster = FakeCluster()
    for pod in pods:
        cluster.apply(pod)
    state = ClusterState.static(shared_example_policy(), inventory(two_leaves(), [used("b2", 4)]))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    reply = await post(client, "/filter", args(pods[0], ["a1", "b1", "b2"]))
    assert reply["NodeNames"] == ["b1", "b2"]
    assert "requires its 3 remaining pods on one leaf" in reply["FailedNodes"]["a1"]
    placed = [(await schedule(client, pod, ["a1", "b1", "b2"]))[0] for pod in pods]
    assert sorted(placed) == ["b1", "b1", "b2"]
    late = required_pod("r3", size=4)  # a fourth pod: leaf l2 is full now, and a1 is not on it
    cluster.apply(late)
    reply = await post(client, "/filter", args(late, ["a1", "b1", "b2"]))
    assert reply["NodeNames"] == []
    assert "they are on leaf z1/s1/l2" in reply["FailedNodes"]["a1"]


async def test_required_topology_without_room_anywhere_says_so(aiohttp_client: Any) -> None:
    pod = required_pod("big", size=4)
    cluster = FakeCluster()
    cluster.apply(pod)
    state = ClusterState.static(shared_example_policy(), inventory(two_leaves(), [used("b2", 4)]))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    reply = await post(client, "/filter", args(pod, ["a1", "b1", "b2"]))
    assert reply["NodeNames"] == []
    assert all("no leaf has room for them now" in why for why in reply["FailedNodes"].values())
