"""`accel demo`, small: a seeded day through the real webhook, extender and API over HTTPS on 127.0.0.1.

One run (module fixture) is checked against the invariants the demo exists to show:
quota never exceeded at any admission, every placement on a type the pod's profile allows (and
the bound pod's type annotation equal to its node's type), chargeback that adds up, denials that
say why, and fallback placements once H200 was full. A second, tinier pair of runs checks that a
seed reproduces the same day.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from accel.policy.models import ALL_TYPES
from cli.demo import run_demo
from cli.demo_records import DemoOptions, DemoResult
from cli.demo_report import summary_text, write_report
from cli.demo_summary import chargeback, decision_counts, preference_rates

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = DemoOptions(
    pods=100,
    seed=7,
    policy_dir=ROOT / "examples/policy",
    snapshot=ROOT / "examples/cluster.yaml",
    day_hours=8.0,
)


@pytest.fixture(scope="module")
def result() -> DemoResult:
    return asyncio.run(run_demo(OPTIONS))


def test_every_pod_has_an_outcome_and_most_are_admitted(result: DemoResult) -> None:
    assert len(result.outcomes) == OPTIONS.pods
    admitted = [o for o in result.outcomes if o.admitted]
    assert len(admitted) > OPTIONS.pods // 2
    assert any(o.node for o in admitted)


def test_no_admission_ever_exceeded_a_quota(result: DemoResult) -> None:
    assert result.quota_checks, "no admission was recorded"
    for check in result.quota_checks:
        team = result.parsed.policy.team(check.team)
        assert team is not None, check
        for key, limit in team.quota.items():
            used = check.usage.get(key, Fraction(0)) if key != ALL_TYPES else check.usage[ALL_TYPES]
            assert used <= Fraction(str(limit)), (
                f"{check.pod} at hour {check.t_h:.2f}: {check.team} uses {used} of {limit} {key}"
            )


def test_every_placement_is_on_an_allowed_type_and_annotated_with_it(result: DemoResult) -> None:
    placed = [o for o in result.outcomes if o.node and o.gpus]
    assert placed
    for o in placed:
        assert o.accel_type == o.node_type, (
            f"{o.name} on {o.node}: annotation {o.accel_type}, node {o.node_type}"
        )
        if o.profile_types:
            assert o.node_type in o.profile_types, f"{o.name} ({o.profile}) on {o.node_type}"


def test_every_placement_respects_the_team_allowed_types(result: DemoResult) -> None:
    for o in result.outcomes:
        team = result.parsed.policy.team(o.team)
        if o.node and o.gpus and team is not None and team.allowed_types is not None:
            assert o.placed_type in team.allowed_types, (
                f"{o.name} ({o.team}, {o.profile}) ran on {o.placed_type}"
            )


def test_chargeback_adds_up(result: DemoResult) -> None:
    bill = chargeback(result.outcomes)
    assert bill.total > 0
    assert sum((bill.team_total(t) for t in bill.by_team_type), Decimal(0)) == bill.total
    by_pod = sum((o.cost_per_hour * Decimal(str(round(o.hours, 6))) for o in result.outcomes
                  if o.node and o.gpus and o.cost_per_hour is not None and o.hours), Decimal(0))
    assert by_pod == bill.total
    priced = [o for o in result.outcomes if o.node and o.gpus and o.placed_type != "unknown"]
    assert all(o.cost_per_hour is not None and o.cost_per_hour > 0 for o in priced), (
        "placed GPU pods without a price"
    )


def test_the_chargeback_counters_outlive_the_pods_and_match_the_records(result: DemoResult) -> None:
    """Every pod is deleted when it finishes; the counters, advanced from pod times, still hold the day."""
    bill = chargeback(result.outcomes)
    by_team_type = {
        (team, kind): hours for team, types in bill.gpu_hours.items() for kind, hours in types.items()
    }
    counted = {key: seconds / 3600 for key, (seconds, _cost) in result.counters.items() if seconds > 0}
    assert counted.keys() == by_team_type.keys()
    for key, hours in by_team_type.items():
        assert counted[key] == pytest.approx(hours, rel=1e-3, abs=0.01), key
    assert sum(c for _, c in result.counters.values()) == pytest.approx(float(bill.total), rel=1e-3, abs=0.05)


def test_denials_carry_reason_and_message(result: DemoResult) -> None:
    denied = [o for o in result.outcomes if not o.admitted]
    assert denied
    for o in denied:
        assert o.reason and o.reason != "denied" and o.message, o
    reasons = {reason for (decision, reason) in decision_counts(result.outcomes) if decision == "denied"}
    assert {"missing-labels", "quota-exceeded"} <= reasons


def test_fallback_placements_happened_when_h200_was_full(result: DemoResult) -> None:
    rate = preference_rates(result.outcomes)["large-any"]
    assert rate.fallbacks > 0
    assert set(rate.by_type) <= {"nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb"}


def test_report_files_and_summary(result: DemoResult, tmp_path: Path) -> None:
    files = write_report(result, tmp_path)
    assert [f.name for f in files] == ["report.md", "allocation.png", "chargeback.png"]
    assert all(f.stat().st_size > 0 for f in files)
    assert files[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary_text(result)
    for section in ("Admission decisions", "Preference hits", "Chargeback", "fragmented"):
        assert section in text
    assert set(result.api_views) == {"nlp", "vision", "research", "platform"}
    assert "premium-h200" in result.api_views["nlp"] and "premium-h200" not in result.api_views["vision"]


def test_without_matplotlib_the_report_says_how_to_get_the_plots(
    result: DemoResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.demo_report.plotting_available", lambda: False)
    (report,) = write_report(result, tmp_path)
    text = report.read_text()
    assert "pip install 'accel[plot]'" in text and ".png" not in text
    assert "## Chargeback" in text


def test_a_seed_reproduces_the_same_day() -> None:
    small = DemoOptions(
        pods=25, seed=3, policy_dir=OPTIONS.policy_dir, snapshot=OPTIONS.snapshot, day_hours=4.0
    )
    first, second = (asyncio.run(run_demo(small)) for _ in range(2))
    assert first.outcomes == second.outcomes
