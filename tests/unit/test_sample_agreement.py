"""The samples, README and demo say the same thing about unlabelled GPU nodes (issue 18)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from accel.cluster.catalog import UNKNOWN_TYPE, load_builtin_catalog
from accel.policy.loading import parse_policy
from cli.demo_report import UNPRICED, cost_cell

ROOT = Path(__file__).resolve().parents[2]


def test_no_restricted_sample_team_lists_the_unknown_type() -> None:
    """README: a team with allowedTypes or a per-type quota never runs on unlabelled GPU nodes, so
    listing `unknown` in its allowedTypes would promise what admission never does."""
    files = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "examples" / "policy").glob("*.yaml")}
    policy = parse_policy(files, load_builtin_catalog()).policy
    offenders = [t.name for t in policy.teams if t.allowed_types and UNKNOWN_TYPE in t.allowed_types]
    assert offenders == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "a restricted team never runs on them" in readme and "`unpriced`" in readme


def test_gpu_hours_without_a_price_read_unpriced_not_free() -> None:
    assert cost_cell(Decimal(0), 10.6) == UNPRICED
    assert cost_cell(Decimal("12.5"), 3.0) == "$12.50"
    assert cost_cell(Decimal(0), 0.0) == "$0.00"


def test_the_license_is_an_spdx_expression() -> None:
    """pyproject's `license = "Apache-2.0"` (PEP 639; a TOML table is deprecated and pip warns on
    every install) reaches the installed metadata as License-Expression."""
    import importlib.metadata
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert any(
        r.startswith("setuptools>=77") for r in project["build-system"]["requires"]
    )  # first to read it
    assert importlib.metadata.metadata("accel").get("License-Expression") == "Apache-2.0"
