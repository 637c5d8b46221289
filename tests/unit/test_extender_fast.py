"""The extender's vectorised fast path against the per-node reference, on seeded random clusters.

Each case builds a random cluster (types, sizes, NotReady/cordoned nodes, leaf/spine/zone with
gaps, RDMA, bound job pods), learns a few pods, assumes a few binds, then asks filter and
prioritize for random candidate lists (subsets, shuffles, duplicates, unknown names) and demands
exactly the reference's answer, and a prioritize reply byte-identical to plain orjson rendering.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from accel.capacity.inventory import Inventory
from accel.cluster.pods import parse_pod
from accel.placement.bind import BindRefused
from accel.placement.core import ExtenderCore
from accel.placement.index import ClusterIndex
from extender.priority_reply import PriorityRenderer, render_priorities
from extender.raw_args import ArgsReader
from extender.wire import ExtenderArgs, _validation_message
from serving.body import BadRequest, parse_json_object
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy
from tests.unit.extender_reference import reference_filter, reference_prioritize

TYPES = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb", "nvidia-l4-24gb")
PROFILES = ("large-any", "a100-80gb", "premium-h200", "gpu-any", None, "no-such-profile")
JOB = "accel.dev/job"


def random_cluster(rng: random.Random, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes, pods = [], []
    for i in range(size):
        name = f"n{i:03d}"
        gpus = rng.choice((1, 2, 4, 8))
        nodes.append(
            node_object(
                name,
                rng.choice(TYPES),
                gpus,
                zone=rng.choice(("z1", "z2")),
                spine=rng.choice(("s1", "s2", None)),
                leaf=rng.choice(("l1", "l2", "l3", None)),
                rdma=rng.random() < 0.3,
                cpu=str(rng.choice((16, 64))),
                ready=rng.random() > 0.1,
                cordoned=rng.random() < 0.1,
            )
        )
        for k in range(rng.randint(0, 2)):
            labels = {JOB: f"j{rng.randint(0, 3)}"} if rng.random() < 0.7 else {}
            used = rng.randint(1, gpus)
            pods.append(
                named_gpu_pod(
                    f"b{i}-{k}", used, profile=None, node=name, labels=labels, cpu=str(rng.randint(1, 9))
                )
            )
    return nodes, pods


def random_pod(rng: random.Random, i: int) -> dict[str, Any]:
    labels = {JOB: f"j{rng.randint(0, 4)}"} if rng.random() < 0.6 else {}
    return named_gpu_pod(
        f"q{i}",
        rng.choice((1, 2, 4, 8)),
        profile=rng.choice(PROFILES),
        labels=labels,
        cpu=str(rng.randint(1, 4)),
    )


def random_names(rng: random.Random, index: ClusterIndex) -> list[str]:
    names = rng.sample(list(index.names), rng.randint(0, len(index.names)))
    if names and rng.random() < 0.3:
        names.append(rng.choice(names))  # a duplicate
    if rng.random() < 0.3:
        names.insert(rng.randint(0, len(names)), "ghost")  # not in the cache
    return names


def assume_some(rng: random.Random, core: ExtenderCore, index: ClusterIndex, count: int) -> None:
    for i in range(count):
        pod = parse_pod(random_pod(rng, 1000 + i))
        core.request(pod, index, 0.0)
        node = rng.choice(index.names)
        try:
            core.begin_bind(
                index, namespace=pod.namespace, name=pod.name, uid=pod.uid, node=node, now=0.0, ttl=60.0
            )
        except BindRefused:  # the pod does not fit there; the next one may
            continue


def random_setup(seed: int) -> tuple[random.Random, ExtenderCore, ClusterIndex]:
    """A random cluster of 1..40 nodes with a few assumed pods, indexed; the rng continues."""
    rng = random.Random(seed)
    nodes, pods = random_cluster(rng, rng.randint(1, 40))
    core = ExtenderCore()
    index = core.index(1, shared_example_policy().policy, inventory(nodes, pods))
    assume_some(rng, core, index, rng.randint(0, 4))
    return rng, core, index


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed-{s}")
def test_fast_path_matches_the_per_node_reference(seed: int) -> None:
    rng, core, index = random_setup(seed)
    renderer = PriorityRenderer()
    for i in range(6):
        req = core.request(parse_pod(random_pod(rng, i)), index, 0.0)
        names = random_names(rng, index)
        assert core.filter(index, req, names) == reference_filter(core, index, req, names)
        expected = reference_prioritize(core, index, req, names)
        scores = core.scores(index, req, names)
        assert scores.pairs() == expected
        body = renderer.render(scores)
        assert orjson.loads(body) == [{"Host": h, "Score": s} for h, s in expected]
        assert body.replace(b" ", b"") == render_priorities(expected)  # only JSON whitespace added


# ---- per-generation index: incremental rebuild ----------------------------------------------------


def _cluster(extra_pods: list[dict[str, Any]] | None = None, **node_kw: Any) -> Inventory:
    """Six nodes, one pod bound on n1; `node_kw` changes node n0."""
    nodes = [node_object(f"n{i}", TYPES[i % 3], leaf=f"l{i % 2}", spine="s1") for i in range(6)]
    nodes[0] = node_object("n0", TYPES[0], leaf="l0", spine="s1", **node_kw)
    pods = [named_gpu_pod("busy", 2, node="n1", labels={JOB: "j"}), *(extra_pods or [])]
    return inventory(nodes, pods)


@pytest.mark.parametrize(
    ("change", "rebuilt"),
    [
        pytest.param({}, 0, id="nothing-changed-rebuilds-nothing"),
        pytest.param(
            {"extra_pods": [named_gpu_pod("new", 1, node="n3")]}, 1, id="pod-bound-rebuilds-its-node"
        ),
        pytest.param({"cordoned": True}, 1, id="node-cordoned-rebuilds-that-node"),
        pytest.param(
            {"extra_pods": [named_gpu_pod("x", 1, node="n3"), named_gpu_pod("y", 1, node="n4")]},
            2,
            id="two-nodes",
        ),
    ],
)
def test_new_generation_rebuilds_only_changed_nodes(change: dict[str, Any], rebuilt: int) -> None:
    policy = shared_example_policy().policy
    core = ExtenderCore()
    first = core.index(1, policy, _cluster())
    second = core.index(2, policy, _cluster(**change))
    assert first.rebuilt_nodes == 6
    assert second.rebuilt_nodes == rebuilt
    fresh = ExtenderCore().index(2, policy, _cluster(**change))
    for name in fresh.names:
        assert second.devices(name) == fresh.devices(name)
        assert second.node(name) == fresh.node(name)
    assert second.known_types == fresh.known_types and second.slots_of == fresh.slots_of
    assert second.job_nodes == fresh.job_nodes and second.bound_uids == fresh.bound_uids


def test_class_ids_and_verdicts_carry_over_but_answers_follow_the_new_generation() -> None:
    policy = shared_example_policy().policy
    core = ExtenderCore()
    index = core.index(1, policy, _cluster())
    req = core.request(parse_pod(named_gpu_pod("p", 8, profile="a100-80gb")), index, 0.0)
    assert "n0" in core.filter(index, req, ["n0"]).passed
    cid = int(index.class_col[index.position["n0"]])
    index = core.index(2, policy, _cluster(extra_pods=[named_gpu_pod("fill", 1, node="n0")]))
    assert int(index.class_col[index.position["n0"]]) != cid  # a new class: 7 of 8 free
    assert core.filter(index, req, ["n0"]).failed == {
        "n0": "accel: only 7 of 8 nvidia-a100-80gb GPUs free, pod needs 8"
    }
    index = core.index(3, policy, _cluster())
    assert int(index.class_col[index.position["n0"]]) == cid  # same state, same id, memo reused
    assert core.filter(index, req, ["n0"]).passed == ["n0"]


def test_class_table_is_reset_when_it_outgrows_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("accel.placement.index.CLASS_LIMIT", 2)
    policy = shared_example_policy().policy
    core = ExtenderCore()
    core.index(1, policy, _cluster())
    table = core.state.classes
    index = core.index(2, policy, _cluster(cordoned=True))
    assert core.state.classes is not table and index.rebuilt_nodes == 6


# ---- positions of candidate lists ----------------------------------------------------------------


def test_positions_of_a_repeated_list_are_remembered_and_a_changed_list_is_not_confused() -> None:
    index = ExtenderCore().index(1, shared_example_policy().policy, _cluster())
    names = ["n0", "n1", "n2", "n5"]
    first = index.positions(list(names), 4)
    assert first.tolist() == [0, 1, 2, 5]
    assert index.positions(list(names), 4) is first  # equal list: remembered answer
    changed = index.positions(["n0", "n4", "ghost", "n5"], 4)  # same length and ends, other middle
    assert changed.tolist() == [0, 4, 6, 5]  # 6 = len(names): the unknown sentinel
    assert not first.flags.writeable


# ---- reply bytes -------------------------------------------------------------------------------


def test_cached_reply_bytes_follow_generation_and_node_list_changes() -> None:
    policy = shared_example_policy().policy
    core = ExtenderCore()
    renderer = PriorityRenderer()
    pod = parse_pod(named_gpu_pod("p", 1, profile="large-any"))
    names = ["n0", "n1", "n2"]

    def reply(generation: int, inv: Inventory, candidates: list[str]) -> bytes:
        index = core.index(generation, policy, inv)
        return renderer.render(core.scores(index, core.request(pod, index, 0.0), candidates))

    before = reply(1, _cluster(), names)
    filled = _cluster(extra_pods=[named_gpu_pod("f", 7, node="n0")])  # n0 now nearly full
    after = reply(2, filled, names)
    assert before != after
    index = core.index(2, policy, filled)
    expected = reference_prioritize(core, index, core.request(pod, index, 0.0), names)
    assert orjson.loads(after) == [{"Host": h, "Score": s} for h, s in expected]
    grown = inventory(
        [node_object(f"n{i}", TYPES[i % 3], leaf=f"l{i % 2}", spine="s1") for i in range(7)],
        [named_gpu_pod("busy", 2, node="n1", labels={JOB: "j"})],
    )
    body = orjson.loads(reply(3, grown, ["n6", "n0"]))  # a node added: fragments re-gathered
    assert [h["Host"] for h in body] == ["n6", "n0"]


# ---- request parsing ---------------------------------------------------------------------------


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="not-json"),
        pytest.param(b"[1]", id="not-an-object"),
        pytest.param(orjson.dumps({"Pod": {}, "NodeNames": ["a", "b"]}), id="names"),
        pytest.param(orjson.dumps({"Pod": {}, "NodeNames": ["a", 1]}), id="names-not-strings"),
        pytest.param(orjson.dumps({"Pod": {}, "NodeNames": _deep(70)}), id="names-nested-too-deep"),
        pytest.param(orjson.dumps({"Pod": {"a": _deep(70)}, "NodeNames": ["a"]}), id="pod-nested-too-deep"),
        pytest.param(orjson.dumps({"Pod": {}, "NodeNames": ["a"], "x": _deep(70)}), id="extra-key-too-deep"),
        pytest.param(orjson.dumps({"Pod": {"a": _deep(60)}, "NodeNames": ["a"]}), id="pod-deep-but-allowed"),
        pytest.param(
            orjson.dumps({"Pod": {}, "NodeNames": None, "node_names": _deep(70)}), id="field-name-deep"
        ),
        pytest.param(orjson.dumps({"Pod": {}, "Nodes": {"items": [{"a": _deep(70)}]}}), id="nodes-too-deep"),
        pytest.param(orjson.dumps({"Pod": {}, "Nodes": None, "NodeNames": None}), id="no-node-form"),
        pytest.param(orjson.dumps({"Pod": [], "NodeNames": ["a"]}), id="pod-not-an-object"),
        pytest.param(orjson.dumps({"Pod": {"x": 1}, "NodeNames": []}), id="no-names"),
        pytest.param(orjson.dumps({"pod": {}, "node_names": ["a"]}), id="field-names-not-aliases"),
        pytest.param(orjson.dumps({"Pod": {}, "Nodes": {"items": []}, "NodeNames": ["a"]}), id="both-forms"),
    ],
)
def test_the_args_reader_answers_like_the_generic_reader(raw: bytes) -> None:
    """The one ExtenderArgs parser (ArgsReader, fast path and general path) against the plain
    reference: serving.body's object rules, then model validation of the whole body."""

    def generic(body: bytes) -> ExtenderArgs:
        try:
            return ExtenderArgs.model_validate(parse_json_object(body))
        except ValidationError as exc:
            raise BadRequest(_validation_message(exc, "ExtenderArgs")) from None

    def outcome(parse: Any) -> Any:
        try:
            return parse(raw).model_dump()
        except BadRequest as exc:
            return ("400", exc.reason)

    assert outcome(lambda body: ArgsReader().read(body).args) == outcome(generic)


@pytest.mark.parametrize("row_limit", [0, 96], ids=["unpadded-join", "padded-rows"])
def test_renderer_output_is_the_plain_rendering_up_to_whitespace(
    monkeypatch: pytest.MonkeyPatch, row_limit: int
) -> None:
    monkeypatch.setattr("extender.priority_reply.MAX_ROW_BYTES", row_limit)
    core = ExtenderCore()
    index = core.index(1, shared_example_policy().policy, _cluster())
    req = core.request(parse_pod(named_gpu_pod("p", 1, profile="large-any", labels={JOB: "j"})), index, 0.0)
    for names in (["n3", "n0", "n5", "n0"], [], ["n2"], list(index.names)):
        scores = core.scores(index, req, names)
        body = PriorityRenderer().render(scores)
        plain = render_priorities(scores.pairs())
        assert body == plain if row_limit == 0 else body.replace(b" ", b"") == plain
        assert orjson.loads(body) == orjson.loads(plain)
