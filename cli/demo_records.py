"""The demo day's inputs, progress and results: options, per-pod records, quota checks, the result.

Plain dataclasses shared by the driver (cli.demo_driver), its per-pod steps (cli.demo_steps) and
the report (cli.demo_report).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from accel.policy.models import ParsedPolicy
from cli.demo_summary import ClusterSample, PodOutcome
from cli.demo_workload import DemoPod


@dataclass(frozen=True)
class DemoOptions:
    pods: int = 500
    seed: int = 7
    policy_dir: Path = Path("examples/policy")
    snapshot: Path = Path("examples/cluster.yaml")
    day_hours: float = 24.0
    patience_h: float = 4.0
    sample_every_h: float = 0.25
    existing_end_h: float = 8.0


@dataclass(frozen=True)
class QuotaCheck:
    """A team's usage right after one of its pods was admitted (cli.demo_steps rule 2); "*" = all types."""

    t_h: float
    team: str
    pod: str
    usage: dict[str, Fraction]


@dataclass
class Progress:
    total: int
    done: int = 0
    admitted: int = 0
    denied: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class PodRecord:
    """What happened to one submitted pod so far: admission, placement, price and times."""

    pod: DemoPod
    admitted: bool = False
    reason: str = ""
    message: str = ""
    profile: str | None = None
    node: str | None = None
    accel_type: str | None = None
    node_type: str | None = None
    gpus: Fraction = Fraction(0)
    cost_per_hour: Decimal | None = None
    started_h: float | None = None
    finished_h: float | None = None
    waiting: str = ""  # why the last scheduling attempt failed
    leaf: str | None = None
    leaf_room: bool | None = None  # cli.demo_summary rule 4
    cheaper_free: bool | None = None  # cli.demo_summary rule 5
    order_chose: bool = False

    def outcome(self, parsed: ParsedPolicy) -> PodOutcome:
        """The frozen record the report reads."""
        profile = parsed.policy.profile(self.profile) if self.profile else None
        return PodOutcome(
            name=self.pod.name,
            team=self.pod.team,
            kind=self.pod.kind,
            profile=self.profile,
            admitted=self.admitted,
            reason=self.reason,
            message=self.message,
            node=self.node,
            accel_type=self.accel_type,
            node_type=self.node_type,
            profile_types=profile.types if profile else (),
            gpus=self.gpus,
            cost_per_hour=self.cost_per_hour,
            started_h=self.started_h,
            finished_h=self.finished_h,
            waiting=self.waiting if self.node is None else "",
            job=self.pod.job,
            leaf=self.leaf,
            leaf_room=self.leaf_room,
            cheaper_free=self.cheaper_free,
            order_chose=self.order_chose,
        )


@dataclass
class DemoResult:
    options: DemoOptions
    parsed: ParsedPolicy
    outcomes: list[PodOutcome]
    samples: list[ClusterSample]
    quota_checks: list[QuotaCheck]
    http_calls: Counter[str]
    api_views: dict[str, list[str]]
    wall_s: float = 0.0
    # (team, type) -> (GPU-seconds, cost): accel_gpu_seconds_total / accel_gpu_cost_total at the end
    counters: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @property
    def gave_up(self) -> list[PodOutcome]:
        return [o for o in self.outcomes if o.admitted and o.node is None]
