"""Strict JSON body parsing (serving/body.py)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.body import BadRequest, json_depth_exceeds, parse_json_object


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty body"),
        (b"   ", "empty body"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"text"', "got str"),
        (b"null", "got NoneType"),
        (_nested(65), "deeper than 64"),
        (b'{"a": [' * 40 + b"1" + b"]}" * 40, "deeper than 64"),
    ],
    ids=[
        "empty",
        "whitespace",
        "invalid-json",
        "array-top",
        "string-top",
        "null-top",
        "objects-65-deep",
        "mixed-80-deep",
    ],
)
def test_bad_bodies_are_bad_requests(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        parse_json_object(raw)
    assert info.value.status == 400


def test_depth_64_is_accepted() -> None:
    assert parse_json_object(_nested(64))["a"]


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ({}, 1, False),
        ({"a": {}}, 1, True),
        ({"a": [1, {"b": 2}]}, 3, False),
        ({"a": [1, {"b": {}}]}, 3, True),
    ],
    ids=["flat", "two-levels-limit-one", "three-levels-limit-three", "four-levels-limit-three"],
)
def test_depth_count(value: object, limit: int, expected: bool) -> None:
    assert json_depth_exceeds(value, limit) is expected


def test_very_deep_body_does_not_overflow_the_stack() -> None:
    with pytest.raises(BadRequest):
        parse_json_object(b"[" * 100_000 + b"]" * 100_000)


_json = st.recursive(
    st.none() | st.integers(-(2**40), 2**40) | st.text(alphabet="{[]}ab\"\\", max_size=4),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet="{[a", max_size=3), inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(st.text(max_size=3), _json, max_size=3), limit=st.integers(1, 12))
def test_depth_limit_decided_as_the_full_walk(value: dict[str, object], limit: int) -> None:
    """parse_json_object skips the walk when the text has no more `{`/`[` than the limit (strings
    included): it refuses exactly the bodies the walk refuses."""
    raw = orjson.dumps(value)
    try:
        parse_json_object(raw, max_depth=limit)
        refused = False
    except BadRequest:
        refused = True
    assert refused is json_depth_exceeds(value, limit)
