"""The demo's outputs: the stdout summary, `report.md`, `allocation.png` and `chargeback.png`.

All numbers come from `cli.demo_summary` over the driver's records; this module only formats
them. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from cli.demo_records import DemoResult
from cli.demo_summary import (
    ADMITTED,
    Chargeback,
    chargeback,
    decision_counts,
    job_leaf_target,
    job_placements,
    never_started,
    placements_per_type,
    preference_rates,
    premium_use,
    time_weighted_mean,
)
from cli.plotting import PLOT_HINT, plotting_available, pyplot


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


UNPRICED = "unpriced"


def cost_cell(amount: Decimal, gpu_hours: float) -> str:
    """The cost of a chargeback row; hours that cost nothing ran on a type without a price, and
    "$0.00" would read as free."""
    return UNPRICED if amount == 0 and gpu_hours > 0 else _usd(amount)


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


def _sections(result: DemoResult) -> dict[str, list[str]]:
    """Every section of the report as Markdown lines (the stdout summary uses the same)."""
    outcomes = result.outcomes
    decisions = decision_counts(outcomes)
    placed = [o for o in outcomes if o.node]
    bill: Chargeback = chargeback(outcomes)
    samples = [
        s for s in result.samples if s.t_h <= result.options.day_hours
    ]  # the day, not the drain after it
    peak = max(samples, key=lambda s: s.allocated_total) if samples else None
    out: dict[str, list[str]] = {}
    admitted = sum(n for (d, _), n in decisions.items() if d == ADMITTED)
    out["Run"] = [
        f"- {len(outcomes)} pods submitted over {result.options.day_hours:.0f} simulated hours (seed "
        f"{result.options.seed});"
        f" {admitted} admitted, {len(outcomes) - admitted} denied, {len(placed)} started,"
        f" {len(result.gave_up)} gave up waiting for a node.",
        f"- {sum(result.http_calls.values())} HTTPS calls in {result.wall_s:.1f} s wall time: "
        + ", ".join(f"{path} {n}" for path, n in sorted(result.http_calls.items()))
        + ".",
    ]
    out["Admission decisions"] = _table(
        ["decision", "reason", "pods"],
        [
            (d, r or "-", n)
            for (d, r), n in sorted(decisions.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
        ],
    )
    stuck = never_started(outcomes)
    if stuck:
        out[f"Admitted but never started (deleted after {result.options.patience_h:g} h Pending)"] = _table(
            ["profile", "pods", "last scheduling failure"], [(p, n, why) for (p, why), n in stuck.items()])
    out["Placements per accelerator type"] = _table(["type", "pods"], placements_per_type(outcomes).items())
    out["Preference hits (multi-type profiles)"] = _table(
        ["profile", "placed", "first choice", "fallback", "hit rate", "by type"],
        [
            (
                p,
                r.placed,
                r.hits,
                r.fallbacks,
                f"{r.hit_rate:.0%}",
                ", ".join(f"{t}: {n}" for t, n in sorted(r.by_type.items())),
            )
            for p, r in preference_rates(outcomes).items()
        ],
    )
    premium = premium_use(outcomes)
    if premium.multi_type_hours:
        out["Scarce types (pods that allowed several types)"] = [
            f"- {premium.multi_type_hours:.1f} GPU-hours ran for pods whose profile allowed several types;"
            f" {premium.while_cheaper_free:.1f} of them on a more premium type while a less premium one they"
            f" could use was free ({premium.by_profile_order:.1f} because the profile's own order ranks "
            "that type"
            f" first, {premium.against_policy:.1f} otherwise; target 0).",
        ]
    jobs = job_placements(outcomes)
    if jobs:
        together = sum(1 for j in jobs if j.one_leaf)
        target = job_leaf_target(outcomes)
        out["Multi-node jobs (topology co-location)"] = [
            f"- {together} of {len(jobs)} multi-node jobs ran with all their pods on one network leaf;"
            f" {target.one_leaf_of_those} of the {target.had_room} for which one leaf had room when their "
            "first pod"
            " was placed (target: all of those).",
            "",
            *_table(["job", "pods", "leaves"], [(j.job, j.pods, ", ".join(j.leaves)) for j in jobs]),
        ]
    if samples and peak is not None:
        out["GPU allocation and fragmentation"] = [
            f"- over the {result.options.day_hours:.0f} h day: mean allocation "
            f"{time_weighted_mean(samples, 'allocated_total'):.1f}"
            f" of {samples[0].capacity_total:.1f} schedulable GPUs;"
            f" peak {peak.allocated_total:.1f} at hour {peak.t_h:.2f}.",
            f"- mean free GPUs {time_weighted_mean(samples, 'free'):.1f}, of which fragmented (FGD, "
            "observed mix)"
            f" {time_weighted_mean(samples, 'fragmented'):.1f} "
            f"({time_weighted_mean(samples, 'fragmented_share'):.0%} of free).",
        ]
    rows = []
    for team, types in bill.by_team_type.items():
        for kind, amount in sorted(types.items()):
            rows.append(
                (
                    team,
                    kind,
                    f"{bill.gpu_hours[team][kind]:.1f}",
                    cost_cell(amount, bill.gpu_hours[team][kind]),
                )
            )
        rows.append(
            (
                f"**{team}**",
                "all",
                f"{sum(bill.gpu_hours[team].values()):.1f}",
                f"**{_usd(bill.team_total(team))}**",
            )
        )
    rows.append(
        (
            "**total**",
            "",
            f"{sum(sum(v.values()) for v in bill.gpu_hours.values()):.1f}",
            f"**{_usd(bill.total)}**",
        )
    )
    out["Chargeback (GPU-hours x accel.dev/cost-per-hour)"] = _table(
        ["team", "type", "GPU-hours", "cost"], rows
    ) + (
        [
            "- unpriced: GPU-hours on a type with no price (e.g. `unknown`, nodes without GPU labels): "
            "counted, not charged"
        ]
        if any(
            cost_cell(a, bill.gpu_hours[t][k]) == UNPRICED
            for t, types in bill.by_team_type.items()
            for k, a in types.items()
        )
        else []
    )
    out["Chargeback from the counters (accel_gpu_seconds_total, accel_gpu_cost_total)"] = _counter_section(
        result, bill
    )
    out["What each team sees in GET /api/hardware-profiles"] = [
        f"- {team}: {', '.join(names) or '(nothing)'}" for team, names in result.api_views.items()
    ]
    return out


def _counter_section(result: DemoResult, bill: Chargeback) -> list[str]:
    """What the API server's chargeback counters hold after the day, against the per-pod records."""
    if not result.counters:
        return ["- (no counters: the run charged no pod)"]
    rows = [(team or "-", kind, f"{seconds / 3600:.1f}", f"${cost:,.2f}")
            for (team, kind), (seconds, cost) in sorted(result.counters.items()) if seconds > 0]
    hours = sum(s for s, _ in result.counters.values()) / 3600
    cost = sum(c for _, c in result.counters.values())
    recorded = sum(sum(v.values()) for v in bill.gpu_hours.values())
    return [
        f"- advanced every {result.options.sample_every_h:g} virtual hours from the pods' own start/finish "
        "times"
        ' (README "Chargeback"); they outlive the pods, which are deleted when they finish.',
        f"- counters: {hours:.1f} GPU-hours, ${cost:,.2f}; per-pod records above: {recorded:.1f} GPU-hours,"
        f" {_usd(bill.total)} ({'agree' if abs(hours - recorded) < 0.05 + 1e-3 * recorded else 'DIFFER'}).",
        "",
        *_table(["team", "type", "GPU-hours", "cost"], rows),
    ]


def summary_text(result: DemoResult) -> str:
    lines = ["accel demo summary", "=================="]
    for title, body in _sections(result).items():
        lines += ["", title, *body]
    return "\n".join(lines) + "\n"


def write_report(result: DemoResult, out_dir: Path) -> list[Path]:
    """Write report.md and, where matplotlib is installed, the two PNGs into `out_dir` (created);
    return the paths. Without matplotlib the report says how to get the plots instead."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    plots = plotting_available()
    figures = (
        ["![GPU allocation](allocation.png)", "", "![Chargeback](chargeback.png)"]
        if plots
        else [f"(No plots: {PLOT_HINT}.)"]
    )
    lines = ["# accel demo report", "", *figures]
    for title, body in _sections(result).items():
        lines += ["", f"## {title}", "", *body]
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not plots:
        return [report]
    return [
        report,
        _plot_allocation(result, out_dir / "allocation.png"),
        _plot_chargeback(result, out_dir / "chargeback.png"),
    ]


def _plot_allocation(result: DemoResult, path: Path) -> Path:
    plt = pyplot()
    samples = result.samples
    types = sorted({t for s in samples for t in s.capacity})
    times = [s.t_h for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, height_ratios=(3, 1))
    top.stackplot(
        times, [[s.allocated.get(t, 0.0) for s in samples] for t in types], labels=types, step="post"
    )
    top.step(
        times,
        [s.capacity_total for s in samples],
        where="post",
        color="black",
        linewidth=1,
        label="schedulable GPUs",
    )
    top.set_ylabel("GPUs allocated")
    top.legend(loc="upper left", fontsize=7, ncol=2)
    top.set_title("GPU allocation per type over the simulated day")
    bottom.step(times, [s.free for s in samples], where="post", label="free GPUs")
    bottom.step(times, [s.fragmented for s in samples], where="post", label="fragmented (FGD)")
    bottom.set_xlabel("simulated hour")
    bottom.set_ylabel("GPUs")
    bottom.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_chargeback(result: DemoResult, path: Path) -> Path:
    plt = pyplot()
    bill = chargeback(result.outcomes)
    teams = list(bill.by_team_type)
    types = sorted({t for v in bill.by_team_type.values() for t in v})
    fig, ax = plt.subplots(figsize=(8, 5))
    bottom = [0.0] * len(teams)
    for kind in types:
        values = [float(bill.by_team_type[team].get(kind, 0)) for team in teams]
        ax.bar(teams, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("USD")
    ax.set_title(f"Chargeback per team and type (total {_usd(bill.total)})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
