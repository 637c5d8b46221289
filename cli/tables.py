"""The CLI's kubectl-style tables: `accel nodes` (one line per node row) and `accel profiles`.

Presentation only: the rows come from accel.capacity.nodeview and accel.profiles.availability."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from accel.capacity.nodeview import NodeRow
from accel.cluster.gpu_equivalents import format_gpus
from accel.profiles.summary import ProfileSummary

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("NODE", "name"),
    ("TYPE", "display_name"),
    ("GPUS", "gpus"),
    ("ALLOCATED", "allocated"),
    ("FREE", "free"),
    ("MEMORY", "memory"),
    ("SHARING", "sharing"),
    ("TOPOLOGY", "topology"),
    ("STATUS", "status"),
)

def table_cells(row: NodeRow) -> list[str]:
    topology = "/".join(part for part in (row.zone, row.spine, row.leaf) if part) + (
        " rdma" if row.rdma else ""
    )
    values = {
        "name": row.name,
        "display_name": row.display_name,
        "gpus": str(row.gpus),
        "allocated": format_gpus(Fraction(row.allocated).limit_denominator(100)),
        "free": format_gpus(Fraction(row.free).limit_denominator(100)),
        "memory": f"{row.memory_gb:g}GB" if row.memory_gb else "-",
        "sharing": row.sharing,
        "topology": topology or "-",
        "status": row.status,
    }
    return [values[key] for _, key in TABLE_COLUMNS]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, like kubectl."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


PROFILE_TABLE_HEADERS = ("PROFILE", "TYPE", "SHARING", "FREE", "TOTAL GPUS", "PENDING", "$/GPU-H", "STATUS")


def profile_table_cells(summary: ProfileSummary) -> list[str]:
    """One table row for `summary`, in PROFILE_TABLE_HEADERS order."""
    free = str(summary.available_units) + ("" if summary.unit == "GPU" else f" x {summary.unit}")
    status = "disabled" if not summary.enabled else ("available" if summary.available else "full")
    return [
        summary.name,
        # every type in preference order, as the webhook tries them; one type by its display name
        " > ".join(summary.accelerator_types) if len(summary.accelerator_types) > 1 else summary.display_type,
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
