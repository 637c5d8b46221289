"""Golden AdmissionReview cases: every folder under tests/golden/webhook/ is one test.

Each runs the real app (mutate, apply the decoded patch, validate the mutated pod) and asserts the
decision in the committed `expected.json`: allowed or not, the reason code(s), the audit
annotations, the status code of a denial, how many warnings, the JSON Patch ops (as a set) and the
ledger reservations. Message texts are not compared here (tests/unit/test_webhook_messages.py does,
once per denial code family). tests/golden/README.md says how to add a case and regenerate
expectations; tests/unit/webhook_harness.py defines the format.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.golden.webhook.make_cases import case_files, cases
from tests.unit.webhook_harness import GOLDEN_DIR, check_wire, decision, load_case, reason_codes, run_case

CASES = sorted(p for p in GOLDEN_DIR.iterdir() if (p / "request.json").exists())


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_every_case_has_an_expectation_and_nothing_else_lies_around() -> None:
    allowed = {"request.json", "setup.json", "expected.json"}
    for case in CASES:
        assert (case / "expected.json").exists(), f"{case.name}: run make_cases.py, review the expectation"
        assert {p.name for p in case.iterdir()} <= allowed, case.name


def test_committed_inputs_are_what_make_cases_writes() -> None:
    """The corpus is defined in make_cases.py; a hand-edited request.json would drift from it."""
    defined = cases()
    assert sorted(defined) == [p.name for p in CASES]
    for name, (request, setup) in defined.items():
        for file_name, text in case_files(request, setup).items():
            committed = (GOLDEN_DIR / name / file_name).read_text()
            assert committed == text, f"{name}/{file_name}: rerun make_cases.py"
        assert (GOLDEN_DIR / name / "setup.json").exists() == bool(setup), name


# Codes no golden case can show: the case format runs the mutating webhook before validation, and
# the ledger never fails; test_webhook_messages.py covers these through the real app.
NOT_IN_GOLDEN = {"forged-annotation", "not-narrowed", "quota-busy", "quota-unavailable"}


def _codes(step: dict[str, Any]) -> list[str]:
    """The reason codes one step of an expectation shows (without the mode's prefix)."""
    decision = str(step["decision"])
    for prefix in ("warned-", "would-deny-", "would-allow-"):
        decision = decision.removeprefix(prefix)
    return list(step.get("reasons", [decision]))


def test_every_reason_code_has_a_case() -> None:
    """A rule whose code no case shows could break without a golden case failing."""
    codes = reason_codes()
    shown = set()
    for case in CASES:
        expected = load_case(case)[2]
        for step in (expected.get("mutate"), expected.get("validate"), expected.get("update")):
            shown.update(_codes(step) if step else ())
    assert codes - NOT_IN_GOLDEN - shown == set()
    assert codes >= NOT_IN_GOLDEN  # a code renamed away must leave this list too


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
async def test_golden_case(case: Path) -> None:
    request, setup, expected = load_case(case)
    observed = await run_case(request, setup)
    check_wire(observed)
    assert decision(observed) == expected


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
async def test_second_pass_over_mutated_pod_gives_no_patch(case: Path) -> None:
    request, setup, _ = load_case(case)
    first = await run_case(request, setup)
    if first.ops is None:
        pytest.skip("no patch in this case")
    again = copy.deepcopy(request)
    again["request"]["object"] = first.patched
    again["request"]["uid"] = "second-pass"
    result = await run_case(again, setup)
    assert result.mutate is not None and result.mutate["allowed"] is True
    assert result.ops is None, result.mutate
