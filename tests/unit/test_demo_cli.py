"""`accel demo` argument handling and the progress bar (the run itself: tests/integration/test_demo.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cli.demo import ProgressBar
from cli.demo_records import Progress
from cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pods", "0"], "--pods must be at least 1, got 0"),
        (["--policy", "/nonexistent/policy"], "--policy /nonexistent/policy does not exist"),
        (["--snapshot", "/nonexistent/cluster.yaml"], "--snapshot /nonexistent/cluster.yaml does not exist"),
    ],
    ids=["zero-pods", "missing-policy-dir", "missing-snapshot"],
)
def test_bad_arguments_fail_fast_with_what_and_how(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--no-progress", *argv]) == 1
    assert message in capsys.readouterr().err


def test_invalid_policy_is_reported_with_its_errors_before_any_server_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("settings.yaml", "teams.yaml"):
        (tmp_path / name).write_text((ROOT / "examples/policy" / name).read_text())
    (tmp_path / "profiles.yaml").write_text("profiles:\n- name: Bad_Name\n")
    assert main(["demo", "--no-progress", "--policy", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is invalid" in err and "profiles.yaml" in err


def test_progress_bar_shows_done_total_admitted_denied_rate() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10, interactive=True)
    bar(Progress(total=4, done=2, admitted=1, denied=1, started=0.0))
    bar.close()
    line = stream.getvalue()
    assert line.startswith("\r[#####.....] 2/4 pods  admitted 1  denied 1  ")
    assert line.rstrip().endswith("pods/s") and line.endswith("\n")


def test_progress_without_a_terminal_is_a_plain_line_per_tenth() -> None:
    """Not 500 `\\r` redraws in one 54 KB line when stderr is a file or a CI log."""
    stream = io.StringIO()  # not a TTY
    bar = ProgressBar(stream)
    for done in range(1, 501):
        bar(Progress(total=500, done=done, admitted=done, denied=0, started=0.0))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 10
    assert lines[0].startswith("progress: 50/500 pods  admitted 50") and lines[-1].startswith(
        "progress: 500/500 pods"
    )
