"""accel.admission.context.shape_errors: every mis-shaped field the planner reads, by path, in table order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.context import light_view, shape_errors
from accel.admission.messages import Finding
from accel.admission.plan import Decision, apply_mode
from accel.cluster.pods import PodView
from accel.policy.models import Mode
from tests.builders import gpu_pod

REQUIRED = ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
TERMS = (*REQUIRED, "nodeSelectorTerms")
OBJECTS = [("metadata",), ("metadata", "labels"), ("metadata", "annotations"), ("spec",), ("spec", "nodeSelector"),
           ("spec", "affinity"), ("spec", "affinity", "nodeAffinity"), REQUIRED]
LISTS = [("spec", "tolerations"), ("spec", "containers"), ("spec", "initContainers"), TERMS,
         ("spec", "affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution")]


def at(pod: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if type(pod) is not dict:
            return None
        pod = pod.get(key)
    return pod


def expected(pod: dict[str, Any]) -> list[str]:
    """The rule, path by path (the straightforward walk the implementation must agree with)."""
    errors = [".".join(p) + " must be an object" for p in OBJECTS if at(pod, p) is not None and type(at(pod, p)) is not dict]
    for path in LISTS:
        items = at(pod, path)
        if items is not None and (type(items) is not list or any(type(i) is not dict for i in items)):
            errors.append(".".join(path) + " must be a list of objects")
    terms = at(pod, TERMS)
    for term in terms if type(terms) is list else ():
        exprs = term.get("matchExpressions") if type(term) is dict else None
        if exprs is not None and not (type(exprs) is list and all(type(e) is dict for e in exprs)):
            errors.append(".".join(TERMS) + "[].matchExpressions must be a list of objects")
    for name in ("containers", "initContainers"):
        containers = at(pod, ("spec", name))
        for container in containers if type(containers) is list else ():
            resources = container.get("resources") if type(container) is dict else None
            if resources is not None and (type(resources) is not dict or any(
                    resources.get(p) is not None and type(resources.get(p)) is not dict for p in ("requests", "limits"))):
                errors.append(f"spec.{name}[].resources must map requests/limits to objects")
    return errors


junk = st.one_of(st.none(), st.integers(), st.text(max_size=2), st.lists(st.integers(), max_size=2),
                 st.lists(st.dictionaries(st.sampled_from(["matchExpressions", "resources"]), st.integers()), max_size=2),
                 st.just({}))


@settings(max_examples=300, deadline=None)
@given(mangles=st.lists(st.tuples(st.sampled_from([*OBJECTS, *LISTS, (*TERMS, "0"), ("spec", "containers", "0", "resources")]),
                                  junk), max_size=4))
def test_reports_exactly_the_misshaped_paths_in_table_order(mangles: list[tuple[tuple[str, ...], Any]]) -> None:
    pod = gpu_pod()
    for path, value in mangles:
        node: Any = pod
        for key in path[:-1]:
            step: Any = int(key) if key.isdigit() else key
            if type(node) is dict:
                node = node.setdefault(step, {})
            elif type(node) is list and isinstance(step, int) and step < len(node):
                node = node[step]
            else:
                break
        else:
            if type(node) is dict:
                node[path[-1]] = value
    assert shape_errors(pod) == expected(pod)


@pytest.mark.parametrize(("pod", "errors"), [
    (gpu_pod(), []),
    ({"metadata": [], "spec": {"containers": {}}}, ["metadata must be an object", "spec.containers must be a list of objects"]),
    ({"spec": {"affinity": {"nodeAffinity": "x"}}}, ["spec.affinity.nodeAffinity must be an object"]),
], ids=["well-formed-pod", "list-metadata-and-map-containers", "string-node-affinity"])
def test_examples(pod: dict[str, Any], errors: list[str]) -> None:
    assert shape_errors(pod) == errors


def test_enforce_mode_keeps_every_field_of_the_decision_but_the_audit() -> None:
    """apply_mode builds the enforce answer field by field (speed); a new Decision field must not be dropped."""
    values = {"allowed": False, "reason": "r", "profile": "p", "team": "t", "finding": Finding("r", "m", 403),
              "ops": ({"op": "add"},), "document": {"a": 1}, "warnings": ("w",), "audit": {"x": "y"}, "warned": True}
    assert {f.name for f in dataclasses.fields(Decision)} == set(values)
    decision = Decision(**values)  # type: ignore[arg-type]
    audit = {"decision": "r", "profile": "p", "team": "t", "x": "y"}
    assert apply_mode(decision, Mode.ENFORCE) == dataclasses.replace(decision, audit=audit)


@pytest.mark.parametrize("pod", [gpu_pod(), gpu_pod(name="n", labels={"x": "1"}, annotations={"a/b": "c"}), {"metadata": {}, "spec": {}}],
                         ids=["replica-pod", "named-pod-with-notes", "empty-pod"])
def test_light_view_is_what_validation_would_build(pod: dict[str, Any]) -> None:
    """light_view skips pydantic validation (speed); its fields must be exactly what validation gives."""
    view = light_view(pod)
    assert view == PodView.model_validate(view.model_dump())
    assert {k: type(v) for k, v in view.model_dump().items()} == {k: type(v) for k, v in PodView.model_validate(view.model_dump()).model_dump().items()}
