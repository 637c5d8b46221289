"""The texts a pod author reads: every denial says what broke, where, and how to fix it.

Users meet these as `admission webhook "..." denied the request: <message>` far from any docs
(accel.admission.messages), so the project rule is: what (the rule and the numbers), where (the
annotation, label, field or policy entry involved) and how to fix (one concrete way out). The
golden cases (test_webhook_golden.py) assert only reason codes; the wording is checked here, one
test per denial code family, each row through the real webhook app (the golden case of that code
where there is one). A rewording changes one row here, not dozens of golden files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from accel.admission import messages as msg
from kube.errors import Unreachable
from kube.fake import FakeCluster
from tests.builders import gpu_pod, review
from tests.unit.webhook_harness import GOLDEN_DIR, load_case, reason_codes, run_case, validate_only

Case = tuple[dict[str, Any], dict[str, Any]]  # (AdmissionReview request, golden setup)


@dataclass(frozen=True)
class Says:
    """Fragments the message must contain, grouped by what they tell the reader."""

    what: tuple[str, ...]
    where: tuple[str, ...]
    fix: tuple[str, ...]


def golden(name: str) -> Callable[[], Case]:
    def load() -> Case:
        request, setup, _ = load_case(GOLDEN_DIR / name)
        return request, setup
    return load


def built(pod: dict[str, Any], setup: dict[str, Any] | None = None) -> Callable[[], Case]:
    return lambda: (review(pod, uid="uid-message"), setup or {})


async def denial(case: Case, *, store: FakeCluster | None = None) -> dict[str, Any]:
    """The response that denies the pod (the first that does: mutating, validating, update)."""
    observed = await run_case(*case, store=store)
    denials = [r for r in observed.responses if not r["allowed"]]
    assert denials, observed
    return denials[0]


def assert_says(response: dict[str, Any], code: str, says: Says) -> None:
    assert response["auditAnnotations"]["decision"] == code
    message = response["status"]["message"]
    for part, fragments in (("what", says.what), ("where", says.where), ("how to fix", says.fix)):
        missing = [f for f in fragments if f not in message]
        assert not missing, f"{code}: message does not say {part} {missing}: {message}"


ROWS = dict[str, tuple[str, Callable[[], Case], Says]]


def _ids(rows: ROWS) -> list[Any]:
    return [pytest.param(code, case, says, id=key) for key, (code, case, says) in rows.items()]


PROFILE: ROWS = {
    "unknown-profile": ("unknown-profile", golden("unknown-profile-denied"), Says(
        what=('hardware profile "h300-dreams" does not exist',),
        where=("annotation accel.dev/profile",),
        fix=("set annotation accel.dev/profile to one of:", '"a100-80gb"', '"gpu-any"'))),
    "disabled-profile": ("disabled-profile", golden("disabled-profile-denied"), Says(
        what=('hardware profile "legacy-v100" is disabled by the admin',),
        where=("annotation accel.dev/profile",),
        fix=("set annotation accel.dev/profile to one of:", '"a100-80gb"'))),
    "no-profile": ("no-profile", golden("no-profile-no-default-denied"), Says(
        what=("pod asks for nvidia.com/gpu but names no hardware profile", "no default profile applies"),
        where=("annotation accel.dev/profile", "accel.dev/default-profile", "defaultProfile"),
        fix=('team "vision" may use: "a100-80gb"', "set annotation accel.dev/profile to one of them"))),
    "profile-unusable": ("profile-unusable", golden(
        "unusable-profile-type-nothing-identifies-denied"), Says(
        what=('profile "amd-mi300x" cannot be applied',
              "'intel-gaudi-32gb' cannot be matched by node affinity"),
        where=("accelerators.yaml", "node.kubernetes.io/instance-type"),
        fix=("add productLabels or gkeAccelerators for it", "retry once its nodes have joined"))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(PROFILE))
async def test_profile_denials_name_the_profile_the_annotation_and_the_usable_profiles(
        code: str, case: Callable[[], Case], says: Says) -> None:
    response = await denial(case())
    assert_says(response, code, says)
    if code == "disabled-profile":  # the list offered as the fix holds only usable profiles
        assert '"legacy-v100"' not in response["status"]["message"].split("one of:")[1]


TEAM: ROWS = {
    "team-mismatch": ("team-mismatch", golden("team-label-mismatch-denied"), Says(
        what=('disagrees with namespace "nlp" which belongs to team "nlp"',),
        where=('pod label team="vision"',),
        fix=('drop the pod label or set it to "nlp"',))),
    "no-team": ("no-team", golden("pod-team-label-in-unlabelled-namespace-team-less"), Says(
        what=("has no team label, so its GPU quota is unknown",
              "does not count: the team comes only from the namespace"),
        where=('namespace "unlabelled"', 'the pod\'s own label team="nlp"'),
        fix=("kubectl label namespace unlabelled team=<team>",))),
    "unknown-team": ("unknown-team", golden("team-without-policy-entry-denied"), Says(
        what=('team "nlp" has no entry in the GPU policy',),
        where=("teams.yaml", 'known teams: "vision"'),
        fix=("ask an admin to add it",))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(TEAM))
async def test_team_denials_name_the_namespace_label_and_the_command_that_fixes_it(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


PERMISSION: ROWS = {
    "profile-not-allowed": ("profile-not-allowed", golden("profile-not-allowed-for-team-denied"), Says(
        what=('team "vision" may not use profile "premium-h200"',),
        where=("annotation accel.dev/profile", "allowedProfiles"),
        fix=('one of the allowed profiles: "a100-80gb"', "ask an admin to add it"))),
    "type-not-allowed": ("type-not-allowed", golden("no-type-of-profile-allowed-for-team-denied"),
                         Says(what=('team "vision" may not use any type of profile "large-any"',
                                    "nvidia-h200-141gb"),
                              where=("allowed types: nvidia-l4-24gb",),
                              fix=("pick a profile with an allowed type",))),
    "no-allowed-type": ("no-allowed-type", golden("generic-profile-no-allowed-type-for-amd-denied"), Says(
        what=('profile "gpu-any" asks for any GPU (amd.com/gpu)',
              'no node in the cluster has a type team "vision" may use'),
        where=("allowed types: nvidia-a100-80gb",),
        fix=("pick a profile with a specific type", "extend the team's allowedTypes"))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(PERMISSION))
async def test_permission_denials_name_team_profile_and_what_is_allowed(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


PLACEMENT: ROWS = {
    "affinity-conflict": ("affinity-conflict", golden("contradictory-affinity-denied"), Says(
        what=('excludes every node of profile "premium-h200"', "allowed types: nvidia-h200-141gb"),
        where=("the pod's own node constraint (nvidia.com/gpu.product In [Tesla-T4])",),
        fix=("remove that constraint or pick a profile with the type you need",))),
    "affinity-conflict-node-selector": ("affinity-conflict", golden("contradictory-node-selector-denied"),
                                        Says(
        what=('excludes every node of profile "premium-h200"',),
        where=("nodeSelector nvidia.com/gpu.product=NVIDIA-L4",),
        fix=("remove that constraint",))),
    "node-not-allowed-unknown-node": ("node-not-allowed", golden("node-name-not-an-accelerator-node-denied"),
                                      Says(
        what=("is not an accelerator node known to accel",),
        where=('spec.nodeName "cpu-9"',),
        fix=("remove spec.nodeName and let the scheduler place the pod",))),
    "node-not-allowed-wrong-type": ("node-not-allowed", golden("node-name-on-other-type-denied"), Says(
        what=("has nvidia-h100-80gb GPUs", 'profile "a100-80gb" for team "nlp" allows only nvidia-a100-80gb'),
        where=('spec.nodeName "h100-1"',),
        fix=("remove spec.nodeName", "or name a node of an allowed type"))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(PLACEMENT))
async def test_placement_denials_quote_the_pods_own_constraint_and_how_to_drop_it(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


REQUEST: ROWS = {
    "resource-mismatch": ("resource-mismatch", golden("amd-resource-under-nvidia-profile-denied"), Says(
        what=('asks for amd.com/gpu, but profile "a100-80gb" uses nvidia.com/gpu',),
        where=('container "main"',),
        fix=("request nvidia.com/gpu instead, or pick a profile that gives what the pod asks for",))),
    "resource-mismatch-mig-size": ("resource-mismatch", golden("mig-slice-of-other-size-denied"), Says(
        what=("it gives 1g.10gb MIG slices, not 3g.40gb",),
        where=('container "main" asks for nvidia.com/mig-3g.40gb',),
        fix=("request nvidia.com/mig-1g.10gb instead",))),
    "too-many-gpus": ("too-many-gpus", golden("too-many-gpus-for-profile-denied"), Says(
        what=("pod asks for 9 GPUs", "allows at most 8 per pod"),
        where=('profile "a100-80gb"',),
        fix=("lower the request or split the job into more pods",))),
    "missing-labels": ("missing-labels", golden("missing-required-labels-denied"), Says(
        what=("GPU pods must carry the labels team, user, job_type", "missing: user"),
        where=("metadata.labels",),
        fix=("add them to the pod template's metadata.labels",))),
    "malformed-pod": ("malformed-pod", golden("malformed-tolerations-denied"), Says(
        what=("the pod object is not a valid v1 Pod",),
        where=("spec.tolerations",),
        fix=("must be a list of objects",))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(REQUEST))
async def test_request_denials_name_the_container_or_field_and_the_request_that_works(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


QUOTA: ROWS = {
    "quota-exceeded-per-type": ("quota-exceeded", golden("over-quota-per-type-denied"), Says(
        what=('team "nlp" would use 18 of 16 nvidia-a100-80gb GPUs', "16 in use, 2 requested"),
        where=("nvidia-a100-80gb",),
        fix=('ask for profile "premium-h200", "large-any" or free GPUs',))),
    "quota-exceeded-all-types": ("quota-exceeded", golden("over-quota-total-denied"), Says(
        what=('team "platform" would use 8 of 4 GPUs across all types', "0 in use, 8 requested"),
        where=("across all types",),
        fix=("free GPUs or ask an admin for more quota",))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(QUOTA))
async def test_quota_denials_give_the_numbers_and_another_profile_to_try(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


async def test_quota_ledger_failures_say_the_pod_was_not_admitted_and_to_retry() -> None:
    store = FakeCluster()
    store.fail_next("create configmaps", Unreachable("connection refused"))
    response = await denial((review(gpu_pod(), uid="uid-ledger-down"), {}), store=store)
    assert_says(response, "quota-unavailable", Says(
        what=("cannot check GPU quota right now", "Unreachable: connection refused"),
        where=("GPU quota",), fix=("the pod was not admitted; retry shortly",)))
    assert response["status"]["code"] == 503  # retryable, unlike a rule's 4xx
    busy = msg.ledger_busy(8)  # needs 8 lost compare-and-swaps in a row: the text is checked directly
    assert (busy.reason, busy.code) == ("quota-busy", 429)
    assert "changed under 8 attempts in a row" in busy.message and "retry" in busy.message


async def test_warn_and_dry_run_modes_carry_the_enforce_mode_text() -> None:
    """The same explanation reaches the author in every mode: as the denial, as a `Warning:`,
    or in the audit annotation `message`."""
    enforced = (await denial(golden("over-quota-per-type-denied")()))["status"]["message"]
    warned = await run_case(*golden("warn-mode-over-quota-admitted-with-warning")())
    assert warned.validate is not None and warned.validate["warnings"] == [f"accel: {enforced}"]
    audited = await run_case(*golden("dry-run-mode-would-deny-in-audit")())
    assert audited.validate is not None and audited.validate["auditAnnotations"]["message"] == enforced


BYPASS: ROWS = {
    "forged-annotation": ("forged-annotation", built(gpu_pod(annotations={"accel.dev/team": "vision"})), Says(
        what=('is set by accel only, and accel computes "nlp"',),
        where=('annotation accel.dev/team="vision"',),
        fix=("remove it from the pod", "check that the mutating webhook ran"))),
    "not-narrowed-generic": ("not-narrowed", built(gpu_pod(profile="gpu-any", namespace="vision")), Says(
        what=("was not narrowed to the team's GPU types by the mutating webhook",),
        where=('generic profile "gpu-any" of team "vision"', "required node affinity"),
        fix=("recreate the pod", "no other webhook rewrites accel's node affinity"))),
    "not-narrowed-typed": ("not-narrowed", built(gpu_pod()), Says(
        what=("has no required node affinity restricting it to nvidia-a100-80gb",),
        where=('profile "a100-80gb"', "required node affinity"),
        fix=("recreate the pod", "no other webhook rewrites accel's node affinity"))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(BYPASS))
async def test_denials_of_a_pod_the_mutating_webhook_did_not_shape_say_so(
        code: str, case: Callable[[], Case], says: Says) -> None:
    response = await validate_only(*case())  # as when the mutating webhook was skipped
    assert not response["allowed"]
    assert_says(response, code, says)


UPDATE: ROWS = {
    "frozen-annotation": ("frozen-annotation", golden("update-author-changes-type-annotation-denied"), Says(
        what=("cannot be changed after admission", '("nvidia-a100-80gb" -> "nvidia-h100-80gb")'),
        where=("annotation accelerator.opendatahub.io/type of pod nlp/train-0",),
        fix=("delete the pod and create it again with the annotation set",
             "change the workload's pod template"))),
    "frozen-annotation-several": (
        "frozen-annotation", golden("update-author-removes-profile-and-price-denied"), Says(
            what=('("2.50" -> (absent))', "and 1 more accel key"),
            where=("annotation accel.dev/gpu-hour-price of pod nlp/train-0",),
            fix=("delete the pod and create it again",))),
}


@pytest.mark.parametrize(("code", "case", "says"), _ids(UPDATE))
async def test_update_denials_name_the_key_its_change_and_how_to_get_another_value(
        code: str, case: Callable[[], Case], says: Says) -> None:
    assert_says(await denial(case()), code, says)


async def test_several_broken_rules_are_all_explained_and_all_coded() -> None:
    response = await denial(golden("namespace-without-team-denied")())
    assert response["auditAnnotations"]["decision"] == "missing-labels"
    assert response["auditAnnotations"]["reasons"] == "missing-labels,no-team"
    first, second = response["status"]["message"].split("; namespace ", 1)
    assert "missing: team" in first and "add them to the pod template's metadata.labels" in first
    assert "kubectl label namespace unlabelled team=<team>" in second


def test_every_reason_code_of_the_messages_module_has_a_row_here() -> None:
    """A new denial code gets its text checked here (and, where reachable, a golden case)."""
    rows = {code for table in (PROFILE, TEAM, PERMISSION, PLACEMENT, REQUEST, QUOTA, BYPASS, UPDATE)
            for code, _, _ in table.values()}
    codes = reason_codes()
    assert len(codes) > 15, codes
    checked_above = {"quota-unavailable", "quota-busy"}
    assert codes - rows - checked_above == set()
