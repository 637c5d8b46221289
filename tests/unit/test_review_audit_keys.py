"""The audit-key filter of `webhook.review.build_response` (rule 4): the API server rejects a whole
AdmissionReview whose auditAnnotations has an invalid key, so every key it cannot take is dropped
and every key it can take is kept. Boundaries: 1 and 63 characters, first/last alphanumeric, no `/`."""

from __future__ import annotations

import pytest

from accel.admission.plan import Decision
from webhook.review import build_response


def audit_of(keys: list[str]) -> dict[str, str]:
    decision = Decision(True, "allowed", audit={key: f"v-{i}" for i, key in enumerate(keys)})
    return dict(build_response("uid", decision, mutating=False)["response"].get("auditAnnotations", {}))


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        pytest.param("a", True, id="one-char"),
        pytest.param("profile", True, id="plain"),
        pytest.param("quota-type", True, id="dash-inside"),
        pytest.param("would-patch.ops_1", True, id="dot-underscore-inside"),
        pytest.param("x" * 63, True, id="63-chars"),
        pytest.param("x" * 64, False, id="64-chars"),
        pytest.param("a" + "-" * 61 + "b", True, id="63-with-61-inner"),
        pytest.param("accel.dev/team", False, id="slash"),
        pytest.param("-lead", False, id="leading-dash"),
        pytest.param("trail.", False, id="trailing-dot"),
        pytest.param("_x", False, id="leading-underscore"),
        pytest.param("", False, id="empty"),
        pytest.param("sp ace", False, id="space"),
        pytest.param("ünïcode", False, id="non-ascii"),
        pytest.param("ok\n", False, id="trailing-newline"),
    ],
)
def test_each_key_is_kept_exactly_when_the_api_server_accepts_it(key: str, kept: bool) -> None:
    found = audit_of(["decision", key])
    assert (key in found) is kept, found
    assert found["decision"] == "v-0"  # a bad key never takes the good ones with it


def test_only_bad_keys_means_no_audit_annotations_field() -> None:
    response = build_response("uid", Decision(True, "allowed", audit={"a/b": "1"}), mutating=False)[
        "response"
    ]
    assert "auditAnnotations" not in response


def test_values_are_passed_through_unchanged() -> None:
    assert audit_of(["reserved", "profile"]) == {"reserved": "v-0", "profile": "v-1"}
