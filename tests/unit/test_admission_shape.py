"""accel.admission.context.shape_errors: every mis-shaped field the planner reads, by path, in table order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from accel.admission.context import light_view, shape_errors
from accel.admission.messages import Finding
from accel.admission.plan import Decision, apply_mode
from accel.cluster.pods import PodView
from accel.policy.models import Mode
from tests.builders import gpu_pod

REQUIRED = ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
TERMS = (*REQUIRED, "nodeSelectorTerms")
OBJECTS = [
    ("metadata",),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("spec",),
    ("spec", "nodeSelector"),
    ("spec", "affinity"),
    ("spec", "affinity", "nodeAffinity"),
    REQUIRED,
]
LISTS = [("spec", "tolerations"), ("spec", "containers"), ("spec", "initContainers"), TERMS,
         ("spec", "affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Resources(_Strict):
    requests: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None


class _Container(_Strict):
    resources: _Resources | None = None


class _Term(_Strict):
    matchExpressions: list[dict[str, Any]] | None = None


class _Required(_Strict):
    nodeSelectorTerms: list[_Term] | None = None


class _NodeAffinity(_Strict):
    requiredDuringSchedulingIgnoredDuringExecution: _Required | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[dict[str, Any]] | None = None


class _Affinity(_Strict):
    nodeAffinity: _NodeAffinity | None = None


class _Spec(_Strict):
    nodeSelector: dict[str, Any] | None = None
    affinity: _Affinity | None = None
    tolerations: list[dict[str, Any]] | None = None
    containers: list[_Container] | None = None
    initContainers: list[_Container] | None = None


class _Metadata(_Strict):
    labels: dict[str, str] | None = None  # ObjectMeta: map[string]string
    annotations: dict[str, str] | None = None


class ReferencePod(_Strict):
    """The slow reference: the v1 Pod fields admission reads as a strict schema (null = absent)."""

    metadata: _Metadata | None = None
    spec: _Spec | None = None


def rejected_paths(pod: dict[str, Any]) -> list[str]:
    """Where schema validation rejects the pod, as field paths (`[]` for a list item)."""
    try:
        ReferencePod.model_validate(pod)
    except ValidationError as exc:
        return [
            "".join("[]" if type(k) is int else f".{k}" for k in e["loc"]).lstrip(".") for e in exc.errors()
        ]
    return []


def covers(reported: str, rejected: str) -> bool:
    return rejected == reported or rejected.startswith((reported + ".", reported + "["))


MANGLED = [
    *OBJECTS,
    *LISTS,
    (*TERMS, "0"),
    (*TERMS, "0", "matchExpressions"),
    ("spec", "containers", "0", "resources"),
    ("spec", "containers", "0", "resources", "requests"),
    ("spec", "containers", "0", "resources", "limits"),
    ("spec", "initContainers", "0"),
]
junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=2),
    st.lists(st.integers(), max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["matchExpressions", "resources"]), st.integers()), max_size=2),
    st.just({}),
)


@settings(max_examples=300, deadline=None)
@given(mangles=st.lists(st.tuples(st.sampled_from(MANGLED),
                                  junk), max_size=4))
def test_reports_exactly_what_schema_validation_rejects(mangles: list[tuple[tuple[str, ...], Any]]) -> None:
    """Every path shape_errors names is one the strict schema rejects (at or below it), and every
    rejection is named: the fast walk agrees with validation, not with a second walk."""
    pod = gpu_pod()
    for path, value in mangles:
        node: Any = pod
        for key in path[:-1]:  # "0" indexes a list; object keys stay strings, as in parsed JSON
            if type(node) is dict:
                node = node.setdefault(key, {})
            elif type(node) is list and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                break
        else:
            last = path[-1]
            if type(node) is dict:
                node[last] = value
            elif type(node) is list and last.isdigit() and int(last) < len(node):
                node[int(last)] = value
    reported = [error.split(" must ", 1)[0] for error in shape_errors(pod)]
    rejected = rejected_paths(pod)
    assert all(any(covers(r, x) for x in rejected) for r in reported), (reported, rejected)
    assert all(any(covers(r, x) for r in reported) for x in rejected), (reported, rejected)


@pytest.mark.parametrize(
    ("pod", "errors"),
    [
        (gpu_pod(), []),
        (
            {"metadata": {"labels": []}, "spec": {"tolerations": {}, "affinity": []}},
            [
                "metadata.labels must be an object",
                "spec.affinity must be an object",
                "spec.tolerations must be a list of objects",
            ],
        ),
        (
            {"metadata": [], "spec": {"containers": {}}},
            ["metadata must be an object", "spec.containers must be a list of objects"],
        ),
        ({"spec": {"affinity": {"nodeAffinity": "x"}}}, ["spec.affinity.nodeAffinity must be an object"]),
    ],
    ids=[
        "well-formed-pod",
        "objects-before-lists",
        "list-metadata-and-map-containers",
        "string-node-affinity",
    ],
)
def test_examples_in_table_order(pod: dict[str, Any], errors: list[str]) -> None:
    assert shape_errors(pod) == errors


def test_enforce_mode_keeps_every_field_of_the_decision_but_the_audit() -> None:
    """apply_mode builds the enforce answer field by field (speed); a new Decision field must not be
    dropped."""
    values = {
        "allowed": False,
        "reason": "r",
        "profile": "p",
        "team": "t",
        "finding": Finding("r", "m", 403),
        "ops": ({"op": "add"},),
        "document": {"a": 1},
        "warnings": ("w",),
        "audit": {"x": "y"},
        "warned": True,
    }
    assert {f.name for f in dataclasses.fields(Decision)} == set(values)
    decision = Decision(**values)  # type: ignore[arg-type]
    audit = {"decision": "r", "profile": "p", "team": "t", "x": "y"}
    assert apply_mode(decision, Mode.ENFORCE) == dataclasses.replace(decision, audit=audit)


@pytest.mark.parametrize(
    "pod",
    [gpu_pod(), gpu_pod(name="n", labels={"x": "1"}, annotations={"a/b": "c"}), {"metadata": {}, "spec": {}}],
    ids=["replica-pod", "named-pod-with-notes", "empty-pod"],
)
def test_light_view_is_what_validation_would_build(pod: dict[str, Any]) -> None:
    """light_view skips pydantic validation (speed); its fields must be exactly what validation gives."""
    view = light_view(pod)
    assert view == PodView.model_validate(view.model_dump())
    assert {k: type(v) for k, v in view.model_dump().items()} == {
        k: type(v) for k, v in PodView.model_validate(view.model_dump()).model_dump().items()
    }
