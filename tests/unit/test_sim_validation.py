"""Validation cells, tolerances, z-scores and the rendered table (cli/sim_validation.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from accel.sim.trace import TraceError
from cli.sim_report import read_published_curves
from cli.sim_validation import (
    Check,
    per_seed_verdict,
    render_validation_markdown,
    validation_checks,
    validation_verdict,
)

SUMMARY = {
    ("default", "fgd"): (4.74, 0.13, 10),
    ("default", "random"): (13.71, 0.27, 10),
    ("default", "accel"): (4.17, 0.04, 10),
    ("multigpu50", "random"): (19.84, 1.01, 10),
}
PUBLISHED = {
    ("default", "fgd"): (4.77, 0.10),
    ("default", "random"): (13.70, 0.30),
    ("multigpu50", "random"): (18.72, 0.83),
    ("multigpu50", "fgd"): (2.91, 0.11),
}


@pytest.mark.parametrize(
    ("policy", "mean", "published", "within"),
    [
        pytest.param("fgd", 4.77 + 0.29, 4.77, True, id="fgd-0.29-pp-within-0.3"),
        pytest.param("fgd", 4.77 - 0.31, 4.77, False, id="fgd-0.31-pp-below-misses"),
        pytest.param("random", 13.70 + 0.49, 13.70, True, id="baseline-0.49-pp-within-0.5"),
        pytest.param("clustering", 4.31 - 0.51, 4.31, False, id="baseline-0.51-pp-misses"),
    ],
)
def test_tolerance_per_policy(policy: str, mean: float, published: float, within: bool) -> None:
    assert Check("w", policy, mean, 0.1, 10, published, 0.1).within is within


def test_z_is_the_gap_in_standard_errors_of_the_difference() -> None:
    check = Check("multigpu50", "random", 19.84, 1.01, 10, 18.72, 0.83)
    assert check.z == pytest.approx(1.12 / math.sqrt(1.01**2 / 10 + 0.83**2 / 10))
    assert Check("w", "fgd", 1.0, 0.0, 10, 1.0, 0.0).z == 0.0
    assert Check("w", "fgd", 1.1, 0.0, 10, 1.0, 0.0).z == math.inf


def test_checks_only_cells_with_both_numbers_and_never_accel() -> None:
    keys = {(c.workload, c.policy) for c in validation_checks(SUMMARY, PUBLISHED)}
    assert keys == {("default", "fgd"), ("default", "random"), ("multigpu50", "random")}


def test_verdict_counts_per_policy_and_lists_each_miss_with_z() -> None:
    lines = validation_verdict(validation_checks(SUMMARY, PUBLISHED))
    assert lines[0].startswith("fgd: 1/1 within 0.3 pp")
    assert lines[1].startswith("random: 1/2 within 0.5 pp; worst multigpu50 +1.12 pp")
    assert [line for line in lines if line.startswith("MISS")] == [
        "MISS multigpu50/random: 19.84 +- 1.01 (n=10) vs published 18.72 +- 0.83: +1.12 pp > 0.5 pp, z = +2.7"
    ]


def test_markdown_table_marks_misses_and_missing_cells() -> None:
    table = render_validation_markdown(
        SUMMARY, PUBLISHED, ["default", "multigpu50"], ["random", "fgd", "accel"]
    )
    assert table.splitlines() == [
        "| workload | random | fgd | accel |",
        "|---|---|---|---|",
        "| default | 13.71 (13.70, +0.01) | 4.74 (4.77, -0.03) | 4.17 |",
        "| multigpu50 | 19.84 (18.72, **+1.12**) | - | - |",
    ]


def _curve(level: float) -> list[float]:
    return [min(k, level) for k in range(131)]


def test_per_seed_deterministic_policy_must_match_every_column() -> None:
    published = {("default", "fgd", 42): _curve(95.0), ("default", "fgd", 43): _curve(95.0),
                 ("default", "random", 42): _curve(86.0)}
    ours = {("default", "fgd", 42): _curve(95.004), ("default", "fgd", 43): _curve(95.2),
            ("default", "random", 42): _curve(85.0), ("default", "accel", 42): _curve(96.0)}
    lines, failures = per_seed_verdict(ours, published)
    assert (
        lines[0].startswith("per seed fgd: 1/2 runs match") and "worst 0.200 pp (default seed 43)" in lines[0]
    )
    assert "not reproducible per seed" in lines[1]  # random: reported, never a failure
    assert "rule 4 in cli/sim_validation.py" in lines[1]  # says where "rule 4" is
    assert failures == ["per-seed fgd: 1 run(s) off the published curve, worst 0.200 pp (default seed 43)"]
    assert per_seed_verdict({("default", "fgd", 42): _curve(95.0)}, published) == (
        ["per seed fgd: 1/1 runs match the published curve within 0.01 pp; worst 0.000 pp (default seed 42)"],
        [],
    )


def test_published_curves_reader_keys_by_workload_policy_seed(tmp_path: Path) -> None:
    header = "workload,sc_policy,tune,seed,total_gpus," + ",".join(str(k) for k in range(131))
    row = "openb_pod_list_default,06-FGD,1.3,42,6212," + ",".join(str(float(k)) for k in range(131))
    other = "openb_pod_list_default,99-Other,1.3,42,6212," + ",".join("0" for _ in range(131))
    path = tmp_path / "curves.csv"
    path.write_text("\n".join([header, row, other]) + "\n")
    curves = read_published_curves(path)
    assert list(curves) == [("default", "fgd", 42)] and curves["default", "fgd", 42][100] == 100.0
    path.write_text("\n".join([header, row.replace(",42,", ",x,")]) + "\n")
    with pytest.raises(TraceError, match=r"curves.csv:2: bad or missing seed/column value"):
        read_published_curves(path)
    with pytest.raises(TraceError, match="not found"):
        read_published_curves(tmp_path / "absent.csv")
