"""matplotlib is optional: a clear error names the extra to install."""

from __future__ import annotations

import sys

import pytest

from cli.plotting import PlotUnavailable, plotting_available, pyplot


def test_pyplot_on_agg_when_installed() -> None:
    if not plotting_available():
        pytest.skip("matplotlib not installed")
    assert pyplot().get_backend().lower() == "agg"


def test_missing_matplotlib_raises_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(PlotUnavailable, match=r"pip install 'accel\[plot\]'"):
        pyplot()
