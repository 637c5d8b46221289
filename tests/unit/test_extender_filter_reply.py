"""The fragment-joined filter reply is byte for byte the generic rendering, and the passed list it
hands to prioritize is keyed, decoded and positioned exactly as the scheduler will send it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from accel.cluster.pods import parse_pod
from accel.placement.core import ExtenderCore
from extender.filter_reply import FilterRenderer
from extender.raw_args import ArgsReader
from extender.wire import ExtenderArgs, ExtenderFilterResult, render_filter
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy
from tests.unit.extender_reference import reference_filter
from tests.unit.test_extender_fast import random_names, random_pod, random_setup


def _same_json(body: bytes, expected: bytes) -> bool:
    """Equal up to JSON whitespace, keys in the same order (orjson keeps the order it read)."""
    return orjson.dumps(orjson.loads(body)) == expected


def _args(names: list[str]) -> ExtenderArgs:
    return ExtenderArgs.model_construct(pod={}, nodes=None, node_names=names)


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed-{s}")
def test_joined_reply_is_the_generic_rendering_byte_for_byte(seed: int) -> None:
    rng, core, index = random_setup(seed)
    renderer = FilterRenderer()
    for i in range(6):
        req = core.request(parse_pod(random_pod(rng, i)), index, 0.0)
        for names in (random_names(rng, index), rng.sample(list(index.names), len(index.names))):
            cols = core.filter_columns(index, req, names)
            expected = render_filter(_args(names), core.outcome(index, cols))
            reply = renderer.render(cols)
            plain = len(set(names)) == len(names) and set(names) <= set(index.names)
            assert (reply is not None) == plain
            if reply is not None:
                assert _same_json(reply.body, expected)
                ExtenderFilterResult.model_validate_json(reply.body)


def _index_and_request(gpus: int) -> tuple[ExtenderCore, Any, Any]:
    nodes = [node_object(f"n{i}", gpus=8) for i in range(6)]
    busy = [named_gpu_pod(f"b{i}", 6, node=f"n{i}") for i in (1, 3)]  # n1, n3: two GPUs left
    core = ExtenderCore()
    index = core.index(1, shared_example_policy().policy, inventory(nodes, busy))
    return core, index, core.request(parse_pod(named_gpu_pod("p", gpus, profile="large-any")), index, 0.0)


@pytest.mark.parametrize(
    ("gpus", "passed"),
    [
        pytest.param(4, ["n5", "n0", "n2", "n4"], id="some-pass-list-handed-on"),
        pytest.param(1, None, id="all-pass-nothing-new-to-hand-on"),
        pytest.param(9, None, id="none-pass"),
    ],
)
def test_passed_list_is_what_the_scheduler_sends_to_prioritize(gpus: int, passed: list[str] | None) -> None:
    core, index, req = _index_and_request(gpus)
    names = ["n5", "n0", "n1", "n2", "n3", "n4"]
    reply = FilterRenderer().render(core.filter_columns(index, req, names))
    assert reply is not None
    if passed is None:
        assert reply.passed is None
        return
    assert reply.passed is not None
    assert orjson.loads(reply.body)["NodeNames"] == passed == reply.passed.names
    assert reply.passed.key == orjson.dumps(passed)  # what Go's encoder writes for these names
    assert [index.names[p] for p in reply.passed.positions.tolist()] == passed
    reader = ArgsReader()
    reader.learn(reply.passed.key, reply.passed.names)
    read = reader.read(orjson.dumps({"Pod": {}, "Nodes": None, "NodeNames": passed}))
    assert read.args.names is reply.passed.names and read.names_key is reply.passed.key


def test_fragments_follow_a_changed_node_list() -> None:
    core, index, req = _index_and_request(1)
    renderer = FilterRenderer()
    renderer.render(core.filter_columns(index, req, ["n0"]))
    grown = inventory([node_object(f"n{i}", gpus=8) for i in range(7)])
    index = core.index(2, shared_example_policy().policy, grown)
    cols = core.filter_columns(index, req, ["n6", "n0"])
    reply = renderer.render(cols)
    assert reply is not None and _same_json(
        reply.body, render_filter(_args(["n6", "n0"]), core.outcome(index, cols))
    )


def test_a_run_of_same_shape_pods_reuses_the_decision_until_a_candidate_changes_class() -> None:
    core, index, req = _index_and_request(4)
    names = ["n5", "n0", "n1", "n2", "n3", "n4"]
    renderer = FilterRenderer()
    first = core.filter_columns(index, req, names)
    same_shape = core.request(parse_pod(named_gpu_pod("q", 4, profile="large-any")), index, 0.0)
    again = core.filter_columns(index, same_shape, list(names))
    assert again is first and renderer.render(again) is renderer.render(first)
    other_shape = core.request(parse_pod(named_gpu_pod("r", 1, profile="large-any")), index, 0.0)
    assert core.filter_columns(index, other_shape, names) is not first
    core.begin_bind(
        index, namespace=req.pod.namespace, name="q", uid=same_shape.pod.uid, node="n0", now=0.0, ttl=60.0
    )
    assert core.filter_columns(index, same_shape, names) is not first  # n0 re-classed, still fits
    second = core.request(parse_pod(named_gpu_pod("s", 4, profile="large-any")), index, 0.0)
    core.begin_bind(
        index, namespace=req.pod.namespace, name="s", uid=second.pod.uid, node="n0", now=0.0, ttl=60.0
    )  # n0: no GPU left
    changed = core.filter_columns(index, same_shape, names)
    assert changed is not first and "n0" in core.outcome(index, changed).failed
    assert core.outcome(index, changed) == reference_filter(core, index, same_shape, names)
    reply = renderer.render(changed)
    assert reply is not None and _same_json(
        reply.body, render_filter(_args(names), core.outcome(index, changed))
    )


@pytest.mark.parametrize(
    ("size", "pad_share", "exact"),
    [
        pytest.param(10, 0.125, True, id="one-name-length-one-reason-rows-are-exact"),
        pytest.param(11, 0.125, False, id="a-longer-name-padded-rows"),
        pytest.param(11, 0.0, True, id="no-padding-allowed-exact-join"),
    ],
)
def test_failed_rows_are_padded_only_within_the_share(
    monkeypatch: pytest.MonkeyPatch, size: int, pad_share: float, exact: bool
) -> None:
    monkeypatch.setattr("extender.filter_reply.PAD_SHARE", pad_share)
    nodes = [node_object(f"n{i}", gpus=8) for i in range(size)]
    busy = [named_gpu_pod(f"b{i}", 6, node=f"n{i}") for i in (1, 3)]  # two GPUs left: fail a 4-GPU pod
    names = ["n0", "n1", "n2", "n3"]
    core = ExtenderCore()
    index = core.index(1, shared_example_policy().policy, inventory(nodes, busy))
    req = core.request(parse_pod(named_gpu_pod("p", 4, profile="large-any")), index, 0.0)
    cols = core.filter_columns(index, req, names)
    reply = FilterRenderer().render(cols)
    expected = render_filter(_args(names), core.outcome(index, cols))
    assert reply is not None and _same_json(reply.body, expected)
    assert (reply.body == expected) is exact
    assert reply.passed is not None and reply.passed.key == orjson.dumps(["n0", "n2"])  # always exact
