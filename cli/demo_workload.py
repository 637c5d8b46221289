"""The demo's "realistic day" of pod creations, generated from a seed (pure, deterministic).

`generate_workload(seed=, count=)` returns `DemoPod`s sorted by arrival: what users submit, as a
user writes it (a profile annotation and a plain `nvidia.com/gpu` request; the webhook does the
rest). `pod_manifest(pod)` renders one as the `v1 Pod` the API server would hand to admission
(already defaulted: `schedulerName: default-scheduler`).

Rules:
1. The same (seed, count) always gives the same pods, names, arrivals and durations.
2. The mix is drawn from `MIX` (kind -> weight); each kind fixes the teams, profiles and GPU counts
   it can produce. Kinds meant to be denied (`missing-labels`, `not-allowed`, `over-quota`) are
   part of the mix so every run shows denials with their reasons.
3. A multi-node job (`gang`) is 2..4 pods x 8 GPUs sharing one `accel.dev/job` label (and
`accel.dev/job-size`), arriving
   together; `count` is honoured exactly (the last gang is cut short if needed).
4. Arrivals spread over `day_hours` (Poisson-like, uniform order statistics); durations are in
   simulated hours. Nothing here reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PLAIN_GPU = "nvidia.com/gpu"
JOB_LABEL = "accel.dev/job"
JOB_SIZE_LABEL = "accel.dev/job-size"  # how many pods the job has, as Kubeflow/JobSet would say
PROFILE_ANNOTATION = "accel.dev/profile"
TEAMS: tuple[str, ...] = ("nlp", "vision", "research", "platform")
USERS: Mapping[str, tuple[str, ...]] = {
    "nlp": ("alice", "arun", "mei"),
    "vision": ("bob", "chen"),
    "research": ("dana", "erik"),
    "platform": ("ops",),
}

# kind -> relative weight in the day's mix (rule 2)
MIX: Mapping[str, float] = {
    "training": 0.225,
    "fallback": 0.05,
    "gang": 0.015,
    "notebook": 0.20,
    "inference": 0.16,
    "generic": 0.11,
    "cpu": 0.09,
    "missing-labels": 0.05,
    "not-allowed": 0.04,
    "over-quota": 0.04,
}


@dataclass(frozen=True, slots=True)
class DemoPod:
    """One pod a user submits. `gpus` 0 = a CPU-only pod; `profile` None = no annotation."""

    name: str
    team: str
    kind: str
    profile: str | None
    gpus: int
    arrival_h: float
    duration_h: float
    labels: Mapping[str, str] = field(default_factory=dict)
    job: str | None = None

    @property
    def namespace(self) -> str:
        return f"team-{self.team}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _labels(rng: random.Random, team: str, job_type: str, *, drop_user: bool = False) -> dict[str, str]:
    labels = {"team": team, "user": rng.choice(USERS[team]), "job_type": job_type}
    if drop_user:
        del labels["user"]
    return labels


@dataclass(frozen=True, slots=True)
class _Draft:
    team: str
    kind: str
    profile: str | None
    gpus: int
    duration_h: float
    job_type: str
    drop_user: bool = False
    width: int = 1  # pods in the job (gang only)


def _draft(rng: random.Random, kind: str) -> _Draft:
    """One submission of `kind` (rule 2): team, profile, GPUs, simulated duration."""
    if kind == "training":
        team, profile, gpus = rng.choice(
            (
                ("nlp", "premium-h200", rng.choice((1, 2, 4))),
                ("vision", "a100-80gb", rng.choice((1, 2, 4))),
                ("vision", "legacy-v100", rng.choice((1, 2))),
                ("research", "amd-mi300x", rng.choice((2, 4))),
                ("nlp", "a100-80gb", rng.choice((2, 4))),
            )
        )
        return _Draft(team, kind, profile, gpus, rng.uniform(1.0, 5.0), "training")
    if kind == "fallback":
        return _Draft(
            rng.choice(("nlp", "research")), kind, "large-any", 8, rng.uniform(1.5, 5.0), "training"
        )
    if kind == "gang":
        return _Draft(
            rng.choice(("nlp", "research")),
            kind,
            "large-any",
            8,
            rng.uniform(2.0, 6.0),
            "training",
            width=rng.choice((2, 2, 3, 4)),
        )
    if kind == "notebook":
        return _Draft(rng.choice(TEAMS), kind, "notebook-shared", 1, rng.uniform(0.5, 4.0), "notebook")
    if kind == "inference":
        return _Draft(
            rng.choice(("nlp", "vision", "platform")),
            kind,
            "inference-mig",
            1,
            rng.uniform(2.0, 10.0),
            "inference",
        )
    if kind == "generic":
        generic: str | None = rng.choice(
            ("gpu-any", None)
        )  # None: a plain GPU request; the default profile applies
        return _Draft(rng.choice(TEAMS), kind, generic, rng.choice((1, 1, 2)), rng.uniform(0.5, 3.0), "batch")
    if kind == "cpu":
        return _Draft(rng.choice(TEAMS), kind, None, 0, rng.uniform(0.2, 2.0), "etl")
    if kind == "missing-labels":
        return _Draft(
            rng.choice(TEAMS),
            kind,
            rng.choice(("a100-80gb", "notebook-shared", "gpu-any")),
            1,
            1.0,
            "training",
            drop_user=True,
        )
    if kind == "not-allowed":
        team, profile = rng.choice(
            (("vision", "premium-h200"), ("platform", "large-any"), ("research", "a100-80gb"))
        )
        return _Draft(team, kind, profile, 1 if profile != "large-any" else 8, 2.0, "training")
    if kind == "over-quota":
        team, profile, gpus = rng.choice(
            (
                ("platform", "gpu-any", 6),
                ("vision", "a100-80gb", 8),
                ("research", "amd-mi300x", 8),
                ("nlp", "premium-h200", 8),
            )
        )
        return _Draft(team, kind, profile, gpus, rng.uniform(2.0, 6.0), "training")
    raise ValueError(f"unknown workload kind {kind!r}; known kinds: {', '.join(MIX)}")


def generate_workload(
    *, seed: int, count: int, day_hours: float = 24.0, mix: Mapping[str, float] = MIX
) -> list[DemoPod]:
    """`count` pods over `day_hours` (rules 1-4), sorted by arrival then name."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    pods: list[DemoPod] = []
    serial = 0
    while len(pods) < count:
        kind = rng.choices(kinds, weights)[0]
        draft = _draft(rng, kind)
        arrival = rng.uniform(0.0, day_hours)
        serial += 1
        job = f"{draft.team}-job-{serial:04d}" if kind == "gang" else None
        members = min(draft.width, count - len(pods))
        for member in range(members):
            name = f"{job}-{member}" if job else f"{kind}-{serial:04d}"
            labels = _labels(rng, draft.team, draft.job_type, drop_user=draft.drop_user)
            if job:
                labels[JOB_LABEL] = job
                labels[JOB_SIZE_LABEL] = str(members)
            pods.append(
                DemoPod(
                    name=name,
                    team=draft.team,
                    kind=kind,
                    profile=draft.profile,
                    gpus=draft.gpus,
                    arrival_h=round(arrival, 4),
                    duration_h=round(draft.duration_h, 4),
                    labels=labels,
                    job=job,
                )
            )
    return sorted(pods, key=lambda p: (p.arrival_h, p.name))


def pod_manifest(pod: DemoPod) -> dict[str, Any]:
    """The pod as the API server passes it to admission: user intent plus API defaults."""
    annotations = {PROFILE_ANNOTATION: pod.profile} if pod.profile else {}
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": "4" if pod.gpus else "2", "memory": "16Gi"},
        "limits": {},
    }
    if pod.gpus:
        resources["requests"][PLAIN_GPU] = str(pod.gpus)
        resources["limits"][PLAIN_GPU] = str(pod.gpus)
    container = {
        "name": "main",
        "image": "nvcr.io/nvidia/pytorch:24.05-py3" if pod.gpus else "python:3.11-slim",
        "resources": resources,
        "terminationMessagePath": "/dev/termination-log",
        "imagePullPolicy": "IfNotPresent",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": dict(pod.labels),
            "annotations": annotations,
        },
        "spec": {
            "containers": [container],
            "schedulerName": "default-scheduler",
            "restartPolicy": "Never",
            "dnsPolicy": "ClusterFirst",
            "priority": 0,
        },
        "status": {"phase": "Pending"},
    }
