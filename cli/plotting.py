"""matplotlib on demand. Plots (`accel simulate --plot`, the demo's PNGs) are an optional extra:
the server image leaves matplotlib and its dependencies out, and the servers never import it."""

from __future__ import annotations

import importlib.util
from typing import Any

PLOT_HINT = "plots need matplotlib, which the server image leaves out: pip install 'accel[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no display needed), or PlotUnavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(PLOT_HINT) from exc
    return plt
