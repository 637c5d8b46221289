"""Golden AdmissionReview cases: every folder under tests/golden/webhook/ is one test.

Each runs the real app (mutate, apply the decoded patch, validate the mutated pod) and compares
with the committed `expected.json`; see tests/unit/webhook_harness.py for the format and
tests/golden/webhook/make_cases.py for how cases are written.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.unit.webhook_harness import GOLDEN_DIR, load_case, run_case

CASES = sorted(p for p in GOLDEN_DIR.iterdir() if (p / "request.json").exists())


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
async def test_golden_case(case: Path) -> None:
    request, setup, expected = load_case(case)
    actual = await run_case(request, setup)
    assert actual == expected


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
async def test_second_pass_over_mutated_pod_gives_no_patch(case: Path) -> None:
    request, setup, expected = load_case(case)
    patched = expected["mutate"].get("patched")
    if patched is None:
        pytest.skip("no patch in this case")
    again = copy.deepcopy(request)
    again["request"]["object"] = patched
    again["request"]["uid"] = "second-pass"
    result = await run_case(again, setup)
    assert "patchOps" not in result["mutate"], result["mutate"]
    assert result["mutate"]["allowed"] is True
