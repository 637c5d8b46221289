"""accel.admission.patches: op-level behaviour of the one JSON Patch builder."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonpointer import JsonPointer

from accel.admission.patches import PatchBuilder, PatchError, escape, pointer


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("accel.dev/profile", "accel.dev~1profile"),
        ("a~b", "a~0b"),
        ("~/", "~0~1"),
        ("a~1b", "a~01b"),  # a literal "~1" must not turn into "/" on the way back
        ("plain", "plain"),
    ],
    ids=["slash", "tilde", "tilde-then-slash", "literal-tilde-one", "nothing-to-escape"],
)
def test_escape_round_trips(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert JsonPointer("/" + escaped).parts == [raw]  # the reference reader (jsonpatch's) gets the key back


def test_pointer_joins_escaped_tokens() -> None:
    assert pointer(["spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"]) == (
        "/spec/containers/0/resources/limits/nvidia.com~1gpu"
    )


CASES: list[tuple[str, dict[str, Any], Any, list[dict[str, Any]]]] = [
    (
        "missing-annotations-added-whole",
        {"metadata": {}},
        lambda b: b.set(["metadata", "annotations", "accel.dev/profile"], "x"),
        [{"op": "add", "path": "/metadata/annotations", "value": {"accel.dev/profile": "x"}}],
    ),
    (
        "second-key-into-created-map-is-a-member-add",
        {"metadata": {}},
        lambda b: (
            b.set(["metadata", "annotations", "a/b"], "1"),
            b.set(["metadata", "annotations", "c"], "2"),
        ),
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "1"}},
            {"op": "add", "path": "/metadata/annotations/c", "value": "2"},
        ],
    ),
    (
        "existing-member-replaced",
        {"spec": {"schedulerName": "default-scheduler"}},
        lambda b: b.set(["spec", "schedulerName"], "accel-scheduler"),
        [{"op": "replace", "path": "/spec/schedulerName", "value": "accel-scheduler"}],
    ),
    (
        "equal-value-records-nothing",
        {"spec": {"schedulerName": "accel-scheduler"}},
        lambda b: b.set(["spec", "schedulerName"], "accel-scheduler"),
        [],
    ),
    (
        "deep-missing-parents-created-in-one-op",
        {"spec": {}},
        lambda b: b.set(["spec", "affinity", "nodeAffinity", "x"], [1]),
        [{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {"x": [1]}}}],
    ),
    (
        "null-parent-replaced",
        {"metadata": {"annotations": None}},
        lambda b: b.set(["metadata", "annotations", "k"], "v"),
        [{"op": "replace", "path": "/metadata/annotations", "value": {"k": "v"}}],
    ),
    (
        "append-to-existing-array-uses-dash",
        {"spec": {"tolerations": [{"key": "a"}]}},
        lambda b: b.append(["spec", "tolerations"], {"key": "b"}),
        [{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "b"}}],
    ),
    (
        "append-to-missing-array-adds-array",
        {"spec": {}},
        lambda b: (
            b.append(["spec", "tolerations"], {"key": "a"}),
            b.append(["spec", "tolerations"], {"key": "b"}),
        ),
        [
            {"op": "add", "path": "/spec/tolerations", "value": [{"key": "a"}]},
            {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "b"}},
        ],
    ),
    (
        "remove-existing-member",
        {"r": {"nvidia.com/gpu": "1"}},
        lambda b: b.remove(["r", "nvidia.com/gpu"]),
        [{"op": "remove", "path": "/r/nvidia.com~1gpu"}],
    ),
    (
        "remove-missing-member-records-nothing",
        {"r": {}},
        lambda b: b.remove(["r", "nvidia.com/gpu"]),
        [],
    ),
    (
        "set-inside-array-element",
        {"spec": {"containers": [{"name": "a", "resources": {}}]}},
        lambda b: b.set(["spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"], "1"),
        [{"op": "add", "path": "/spec/containers/0/resources/limits", "value": {"nvidia.com/gpu": "1"}}],
    ),
]


@pytest.mark.parametrize(("doc", "action", "ops"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ops_are_minimal_and_apply_to_the_original(
    doc: dict[str, Any], action: Any, ops: list[dict[str, Any]]
) -> None:
    builder = PatchBuilder(doc)
    action(builder)
    assert builder.ops == ops
    assert jsonpatch.apply_patch(doc, builder.ops) == builder.document


def test_builder_never_mutates_its_input() -> None:
    doc = {"metadata": {"annotations": {"a": "1"}}}
    builder = PatchBuilder(doc)
    builder.set(["metadata", "annotations", "b"], "2")
    assert doc == {"metadata": {"annotations": {"a": "1"}}}


def test_missing_array_index_under_missing_parent_is_an_error() -> None:
    with pytest.raises(PatchError, match="array index"):
        PatchBuilder({}).set(["spec", "containers", 0, "name"], "x")


def test_whole_document_cannot_be_replaced() -> None:
    with pytest.raises(PatchError):
        PatchBuilder({}).set([], {})


keys = st.text(alphabet=st.sampled_from("ab~/.-"), min_size=1, max_size=6)
values = st.one_of(st.integers(), st.text(max_size=3), st.none())


@given(
    doc=st.dictionaries(keys, st.dictionaries(keys, values, max_size=3) | values, max_size=4),
    paths=st.lists(st.tuples(st.lists(keys, min_size=1, max_size=3), values), max_size=5),
)
def test_any_sequence_of_sets_applies_cleanly_and_is_idempotent(
    doc: dict[str, Any], paths: list[Any]
) -> None:
    builder = PatchBuilder(doc)
    for tokens, value in paths:
        builder.set(tokens, value)
    assert jsonpatch.apply_patch(doc, builder.ops) == builder.document
    again = PatchBuilder(builder.document)
    for tokens, value in paths:
        if again.get(tokens, object()) == value:
            again.set(tokens, value)
    assert again.ops == []


def _outcome(builder: PatchBuilder, action: Any) -> tuple[Any, ...]:
    try:
        action()
    except PatchError as exc:
        return ("error", str(exc))
    return (builder.ops, builder.document)


parents = st.one_of(st.none(), st.just("scalar"), st.just(["x"]), st.dictionaries(keys, values, max_size=3))


@given(
    meta=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["annotations", "labels"]), parents, max_size=2)
    ),
    members=st.dictionaries(keys, values, max_size=4),
)
def test_set_members_records_exactly_what_one_set_per_key_records(meta: Any, members: dict[str, Any]) -> None:
    doc: dict[str, Any] = {} if meta is None else {"metadata": meta}
    one_by_one, batched = PatchBuilder(doc), PatchBuilder(doc)

    def each() -> None:
        for key, value in members.items():
            one_by_one.set(["metadata", "annotations", key], value)

    assert _outcome(batched, lambda: batched.set_members(["metadata", "annotations"], members)) == _outcome(
        one_by_one, each
    )
