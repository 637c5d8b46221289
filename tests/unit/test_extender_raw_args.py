"""`ArgsReader` answers exactly like `parse_args_json`, and decodes a repeated node list once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from accel.cluster.pods import parse_pod
from extender.raw_args import ArgsReader
from extender.wire import parse_args_json
from serving.body import BadRequest
from tests.builders import named_gpu_pod

POD = named_gpu_pod("p", 1, profile="large-any")


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"Pod": POD, "Nodes": None, "NodeNames": ["a", "b"]} | fields)


BODIES = [
    pytest.param(_body(), id="scheduler-form"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"Pod":{},"NodeNames":["a"]', id="truncated"),
    pytest.param(b'{"Pod":{},"NodeNames":["a",]}', id="names-not-json"),
    pytest.param(b"[1]", id="not-an-object"),
    pytest.param(_body(NodeNames=["a", 1]), id="names-not-strings"),
    pytest.param(_body(NodeNames=[]), id="no-names"),
    pytest.param(_body(NodeNames=_deep(70)), id="names-nested-too-deep"),
    pytest.param(_body(Pod={"a": _deep(70)}), id="pod-too-deep"),
    pytest.param(_body(Pod={"a": _deep(60)}), id="pod-deep-but-allowed"),
    pytest.param(_body(Pod=[]), id="pod-not-an-object"),
    pytest.param(_body(Nodes={"items": []}), id="both-forms"),
    pytest.param(_body(NodeNames=None), id="no-node-form"),
    pytest.param(b'{"NodeNames":["x"],"Pod":{},"NodeNames":["a"]}', id="duplicate-key-last-wins"),
    pytest.param(b'{"NodeNames":["x"],"Pod":{"NodeNames":["a"]}}', id="nested-names-after-top-level"),
    pytest.param(b'{"NodeNames":null,"Pod":{"NodeNames":["a"]}}', id="nested-names-top-level-null"),
    pytest.param(b'{"NodeNames":"\\u0000\\u0000\\u0000","Pod":{"NodeNames":["a"]}}', id="sentinel-lookalike"),
    pytest.param(b'{"Pod":{},"NodeNames":["a"],"x":[1]}', id="key-after-names"),
    pytest.param(b'{"Pod":{},"NodeNames":["a]","b"]}', id="bracket-in-a-name"),
    pytest.param(b'{"Pod":{},"NodeNames":["a\\"","b"]}', id="escaped-quote-in-a-name"),
    pytest.param(b'{"Pod":{"a\\"NodeNames":["z"]},"NodeNames":["a"]}', id="names-key-inside-a-string"),
    pytest.param(b'{"Pod":{} , "NodeNames" : ["a"] }', id="whitespace"),
]


def _outcome(parse: Any, raw: bytes) -> Any:
    try:
        return parse(raw).model_dump()
    except BadRequest as exc:
        return ("400", exc.reason)


@pytest.mark.parametrize("raw", BODIES)
def test_reader_answers_like_parse_args_json(raw: bytes) -> None:
    reader = ArgsReader()
    for _ in range(2):  # a second read may come from the remembered list
        assert _outcome(lambda b: reader.read(b).args, raw) == _outcome(parse_args_json, raw)


def test_a_repeated_list_is_decoded_once_and_keyed_by_its_json() -> None:
    reader = ArgsReader()
    first = reader.read(_body(NodeNames=["n0", "n1"]))
    again = reader.read(
        orjson.dumps({"Pod": named_gpu_pod("q", 2), "Nodes": None, "NodeNames": ["n0", "n1"]})
    )
    other = reader.read(_body(NodeNames=["n0", "n2"]))
    assert again.args.names is first.args.names and again.names_key is first.names_key
    assert first.names_key == orjson.dumps(["n0", "n1"])
    assert other.args.names == ["n0", "n2"] and other.names_key == orjson.dumps(["n0", "n2"])
    assert reader.read(b'{"Pod":{} , "NodeNames" : ["a"] }').names_key is None  # generic path


def test_the_pod_of_a_filter_prioritize_pair_is_parsed_once() -> None:
    reader = ArgsReader()
    filter_read = reader.read(_body(NodeNames=["n0", "n1", "n2"]))
    prioritize_read = reader.read(_body(NodeNames=["n1"]))
    assert prioritize_read.args.pod is filter_read.args.pod  # decoded once
    view = reader.pod(filter_read)
    assert view == parse_pod(POD)
    assert reader.pod(prioritize_read) is view
    changed = reader.read(
        orjson.dumps({"Pod": named_gpu_pod("p", 2, profile="large-any"), "Nodes": None, "NodeNames": ["n1"]})
    )
    assert reader.pod(changed) is not view and reader.pod(changed).accelerators != view.accelerators
