"""`accel simulate` end to end on a synthetic trace (and, marked slow, the real one if present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from cli.sim_report import PUBLISHED_CURVES_FILE, read_published_curves
from cli.simulate import DEFAULT_TRACE_DIR
from tests.unit.test_sim_trace import write_synthetic_trace


def test_table_with_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_synthetic_trace(tmp_path / "csv", pods=500)
    png = tmp_path / "alloc.png"
    rc = main(["simulate", "--trace-dir", str(trace), "--policies", "bestfit,fgd", "--seeds", "2",
               "--plot", str(png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line.split() for line in out.splitlines() if line.startswith("default")]
    assert [r[1] for r in rows] == ["bestfit", "fgd"] and all(r[-1] == "2" for r in rows)
    assert "pods/s:" in out


def test_json_has_one_record_per_workload_policy_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_synthetic_trace(tmp_path / "csv", pods=400)
    rc = main(
        ["simulate", "--trace-dir", str(trace), "--policies", "random,accel", "--seeds", "2", "-o", "json"]
    )
    records = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert sorted((r["policy"], r["seed"]) for r in records) == [("accel", 42), ("accel", 43),
                                                                 ("random", 42), ("random", 43)]
    for r in records:
        assert r["workload"] == "default" and len(r["allocation_ratio"]) == 131
        assert r["unallocated_gpu_pct"] == pytest.approx(100 - r["allocation_ratio"][100])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--policies", "magic"], "--policies: unknown 'magic'", id="unknown-policy"),
        pytest.param(["--workloads", "nope"], "no openb_pod_list_nope.csv", id="unknown-workload"),
        pytest.param(["--seeds", "0"], "--seeds and --jobs must be >= 1", id="zero-seeds"),
    ],
)
def test_bad_arguments_exit_2_with_the_flag_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    trace = write_synthetic_trace(tmp_path / "csv", pods=50)
    assert main(["simulate", "--trace-dir", str(trace), *args]) == 2
    assert message in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = write_synthetic_trace(tmp_path / "csv", pods=50)
    monkeypatch.setattr("cli.simulate.plotting_available", lambda: False)
    assert main(["simulate", "--trace-dir", str(trace), "--plot", str(tmp_path / "a.png")]) == 2
    captured = capsys.readouterr()
    assert "--plot: plots need matplotlib" in captured.err and "seed=" not in captured.err
    assert not (tmp_path / "a.png").exists()


def test_missing_trace_says_how_to_obtain_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--trace-dir", str(tmp_path)]) == 2
    assert "kubernetes-scheduler-simulator" in capsys.readouterr().err


REAL = DEFAULT_TRACE_DIR / "openb_pod_list_default.csv"
PUBLISHED_CURVES = DEFAULT_TRACE_DIR.parent / PUBLISHED_CURVES_FILE


@pytest.mark.slow
@pytest.mark.skipif(not (REAL.is_file() and PUBLISHED_CURVES.is_file()), reason="real trace absent")
@pytest.mark.parametrize(
    ("workload", "policy", "seed"), [("default", "fgd", 42), ("multigpu50", "packing", 45)]
)
def test_real_trace_reproduces_the_published_per_seed_curve(
    capsys: pytest.CaptureFixture[str], workload: str, policy: str, seed: int
) -> None:
    """Go's RNG emulated: the same seed gives the published run's allocation curve, every column."""
    rc = main(
        ["simulate", "--workloads", workload, "--policies", policy, "--seeds", str(seed - 41), "-o", "json"]
    )
    record = next(r for r in json.loads(capsys.readouterr().out) if r["seed"] == seed)
    assert rc == 0
    published = read_published_curves(PUBLISHED_CURVES)[workload, policy, seed]
    assert max(abs(a - b) for a, b in zip(record["allocation_ratio"], published, strict=True)) <= 0.006
