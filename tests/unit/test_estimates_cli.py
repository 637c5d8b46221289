"""`accel estimate` (cli/estimate.py): flags map to the request, table/json output, errors name the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main

POLICY = str(Path(__file__).resolve().parents[2] / "examples" / "policy")


def test_table_ranks_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["estimate", "--model", "llama-3-70b", "--tokens", "2e12", "--gpus", "64", "--policy", POLICY])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("training llama-3-70b (70.6B params")
    assert lines[1].split()[:3] == ["#", "PROFILE", "TYPE"]
    assert lines[2].split()[0] == "1"
    assert lines[-1].startswith("assumptions: MFU 0.4")


def test_json_output_carries_limits_and_ranking(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "estimate",
        "--params",
        "7e9",
        "--dataset-tokens",
        "1e11",
        "--epochs",
        "2",
        "--gpus",
        "8",
        "--rank-by",
        "cost",
        "--max-cost-per-hour",
        "19",
        "--profile",
        "a100-80gb",
        "--profile",
        "premium-h200",
        "--policy",
        POLICY,
        "-o",
        "json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == 2e11 and result["rankBy"] == "cost"
    assert [e["profile"] for e in result["estimates"]] == [
        "premium-h200",
        "a100-80gb",
    ]  # 8 x 2.30 $/h = 18.4 fits; 8 x 2.50 does not
    assert result["estimates"][1]["rank"] is None and "limit" in result["estimates"][1]["excludedBecause"][0]


def test_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--params", "-1", "--tokens", "0", "--policy", POLICY]) == 1
    err = capsys.readouterr().err
    assert "--params:" in err and "--tokens:" in err
