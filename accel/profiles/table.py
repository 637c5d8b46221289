"""The `accel profiles` table: one kubectl-style line per profile summary."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from accel.capacity.nodeview import render_table
from accel.cluster.gpu_equivalents import format_gpus
from accel.profiles.summary import ProfileSummary

PROFILE_TABLE_HEADERS = ("PROFILE", "TYPE", "SHARING", "FREE", "TOTAL GPUS", "PENDING", "$/GPU-H", "STATUS")


def profile_table_cells(summary: ProfileSummary) -> list[str]:
    """One table row for `summary`, in PROFILE_TABLE_HEADERS order."""
    free = str(summary.available_units) + ("" if summary.unit == "GPU" else f" x {summary.unit}")
    status = "disabled" if not summary.enabled else ("available" if summary.available else "full")
    return [
        summary.name,
        summary.display_type,
        summary.sharing if not summary.replicas else f"{summary.sharing} x{summary.replicas}",
        free,
        format_gpus(Fraction(summary.total_gpus).limit_denominator(100)),
        str(summary.pending_pods),
        f"{summary.price_per_gpu_hour:.2f}" if summary.price_per_gpu_hour is not None else "-",
        status,
    ]


def render_profiles_table(summaries: Sequence[ProfileSummary]) -> str:
    """The `accel profiles` table: one line per profile, kubectl-style columns."""
    return render_table(PROFILE_TABLE_HEADERS, [profile_table_cells(s) for s in summaries])
