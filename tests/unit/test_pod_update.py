"""Pod UPDATE (accel.admission.update): the keys accel decided at admission stay as accel wrote them."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from accel.admission.author_keys import AUTHOR_KEYS
from accel.admission.update import default_writers, frozen_change, is_frozen_annotation, review_update
from accel.cluster.pods import TYPE_ANNOTATION
from accel.policy.kueue import QUEUE_LABEL
from accel.policy.pricing import COST_ANNOTATION, PRICE_ANNOTATION
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from webhook.app import make_app

EXTENDER = "system:serviceaccount:accel-system:accel-extender"
AUTHOR = "alice@example.com"
WRITERS = default_writers("accel-system")


def admitted() -> dict[str, Any]:
    """A GPU pod as the webhook left it (what the author then tries to edit)."""
    pod = gpu_pod(
        name="train-0",
        annotations={
            TYPE_ANNOTATION: "nvidia-a100-80gb",
            PRICE_ANNOTATION: "3.4",
            COST_ANNOTATION: "3.4",
            "accel.dev/team": "nlp",
            "example.com/owner": "alice",
        },
    )
    pod["metadata"]["uid"] = "pod-uid-1"
    return pod


def edited(
    pod: dict[str, Any],
    *,
    annotations: dict[str, str | None] | None = None,
    labels: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    for field, changes in (("annotations", annotations), ("labels", labels)):
        values = new["metadata"].setdefault(field, {})
        for key, value in (changes or {}).items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
    return new


def test_default_writers_are_the_shipped_service_accounts() -> None:
    assert EXTENDER in WRITERS
    assert all(w.startswith("system:serviceaccount:accel-system:accel-") for w in WRITERS)


@pytest.mark.parametrize(
    "changes",
    [
        {TYPE_ANNOTATION: "nvidia-l4-24gb"},
        {TYPE_ANNOTATION: None},
        {"accel.dev/profile": "premium-h200"},
        {"accel.dev/profile": None},
        {"opendatahub.io/hardware-profile-name": "cheap"},
        {PRICE_ANNOTATION: "0.01"},
        {COST_ANNOTATION: None},
        {"accel.dev/quota-type": "nvidia-l4-24gb"},
        {"accel.dev/devices": "0,1"},
        {"accel.dev/placement": "{}"},
        {"accel.dev/job": "other-job"},
        {"accel.dev/anything-new": "x"},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_an_author_cannot_change_a_frozen_annotation(changes: dict[str, str | None]) -> None:
    old = admitted()
    decision = review_update(old, edited(old, annotations=changes), username=AUTHOR, writers=WRITERS)
    assert not decision.allowed and decision.reason == "frozen-annotation"
    assert decision.finding is not None
    (key,) = changes
    message = decision.finding.message
    assert key in message and "nlp/train-0" in message and "delete the pod and create it again" in message


def test_the_kueue_queue_label_is_frozen_too() -> None:
    old = admitted()
    decision = review_update(
        old, edited(old, labels={QUEUE_LABEL: "team-queue"}), username=AUTHOR, writers=WRITERS
    )
    assert not decision.allowed and decision.finding is not None
    assert f"label {QUEUE_LABEL}" in decision.finding.message and "(absent)" in decision.finding.message


def test_the_team_pod_label_is_frozen_when_the_policy_sets_one() -> None:
    """settings.teamPodLabel: cost tools (OpenCost, Kubecost) allocate by that label, so an author
    relabelling a running pod would move its cost to another team."""
    old = admitted()
    old["metadata"].setdefault("labels", {})["accel-team"] = "nlp"
    relabelled = edited(old, labels={"accel-team": "vision"})
    decision = review_update(old, relabelled, username=AUTHOR, writers=WRITERS, team_pod_label="accel-team")
    assert not decision.allowed and decision.finding is not None
    assert "label accel-team" in decision.finding.message and "teamPodLabel" in decision.finding.message
    assert review_update(old, relabelled, username=AUTHOR, writers=WRITERS).allowed  # no such setting


def test_accel_itself_may_change_frozen_keys() -> None:
    old = admitted()
    new = edited(old, annotations={TYPE_ANNOTATION: "nvidia-h100-80gb", PRICE_ANNOTATION: "9"})
    assert review_update(old, new, username=EXTENDER, writers=WRITERS).allowed
    assert not review_update(old, new, username=EXTENDER, writers=()).allowed  # only the configured ones


@pytest.mark.parametrize(
    "changes",
    [
        {"annotations": {"example.com/owner": "bob"}},
        {"annotations": {"example.com/new": "1"}},
        {"labels": {"user": "bob", "extra": "1"}},
    ],
)
def test_other_annotations_and_labels_stay_editable(changes: dict[str, Any]) -> None:
    old = admitted()
    assert review_update(old, edited(old, **changes), username=AUTHOR, writers=WRITERS).allowed


def test_finalizer_removal_status_and_deletion_are_never_blocked() -> None:
    old = admitted()
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["status"] = {"phase": "Running"}
    assert review_update(old, new, username=AUTHOR, writers=WRITERS).allowed
    deleting = edited(old, annotations={TYPE_ANNOTATION: None})
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert review_update(old, deleting, username=AUTHOR, writers=WRITERS).reason == "update-deleting"
    assert review_update(None, old, username=AUTHOR, writers=WRITERS).allowed


@given(
    st.dictionaries(
        st.sampled_from(
            sorted(
                {
                    *AUTHOR_KEYS,
                    TYPE_ANNOTATION,
                    PRICE_ANNOTATION,
                    "accel.dev/team",
                    "example.com/a",
                    "other.io/b",
                }
            )
        ),
        st.one_of(st.none(), st.text(max_size=5)),
        min_size=1,
    )
)
def test_property_any_change_to_a_frozen_key_by_the_author_is_refused(changes: dict[str, str | None]) -> None:
    old = admitted()
    new = edited(old, annotations=changes)
    before, after = old["metadata"].get("annotations", {}), new["metadata"].get("annotations", {})
    touched = any(is_frozen_annotation(k) and before.get(k) != after.get(k) for k in changes)
    assert review_update(old, new, username=AUTHOR, writers=WRITERS).allowed is not touched


def update_review(old: dict[str, Any], new: dict[str, Any], username: str) -> dict[str, Any]:
    body = review(new, uid="upd-1", operation="UPDATE")
    body["request"]["oldObject"] = old
    body["request"]["userInfo"] = {"username": username, "groups": ["system:authenticated"]}
    return body


async def test_the_webhook_answers_pod_updates_on_validate_update() -> None:
    state = ClusterState.static(example_policy(), make_inventory())
    app = make_app(
        state, metrics=Metrics(), ledger_store=FakeCluster(), replica_id="t", annotation_writers=WRITERS
    )
    old = admitted()
    new = edited(old, annotations={TYPE_ANNOTATION: "nvidia-l4-24gb"})
    async with TestClient(TestServer(app)) as client:
        refused = await (
            await client.post("/validate-update", data=orjson.dumps(update_review(old, new, AUTHOR)))
        ).json()
        allowed = await (
            await client.post("/validate-update", data=orjson.dumps(update_review(old, new, EXTENDER)))
        ).json()
        garbage = await client.post("/validate-update", data=b'{"kind": "AdmissionReview"}')
        garbage_text = await garbage.text()
    response = refused["response"]
    assert response["uid"] == "upd-1" and response["allowed"] is False
    assert response["status"]["code"] == 403 and TYPE_ANNOTATION in response["status"]["message"]
    assert "patch" not in response
    assert allowed["response"]["allowed"] is True
    assert garbage.status == 400 and "AdmissionReview" in garbage_text


async def test_warn_mode_admits_the_edit_with_a_warning() -> None:
    state = ClusterState.static(example_policy(mode="warn"), make_inventory())
    app = make_app(state, metrics=Metrics(), replica_id="t", annotation_writers=WRITERS)
    old = admitted()
    new = edited(old, annotations={"accel.dev/profile": "premium-h200"})
    async with TestClient(TestServer(app)) as client:
        answer = await (
            await client.post("/validate-update", data=orjson.dumps(update_review(old, new, AUTHOR)))
        ).json()
    assert answer["response"]["allowed"] is True and "accel.dev/profile" in answer["response"]["warnings"][0]


def test_a_refused_edit_quotes_the_new_value_escaped_and_cut() -> None:
    """The author's text in the denial goes through accel.admission.messages.shown, like every other
    denial's: no terminal control characters, no 200,000-character message."""
    finding = frozen_change("accel.dev/profile", "a100", "x\n\x1b[31m" + "y" * 500, pod="ns/p", label=False)
    assert "\x1b" not in finding.message and "\n" not in finding.message
    assert len(finding.message) < 800 and "characters)" in finding.message
