"""Policy: the three ConfigMap keys `settings.yaml`, `profiles.yaml`, `teams.yaml` as typed models.

The format is a contract (design.md, "Policy"). Parsing is all-or-nothing and reports every
problem at once, each as `file: path: reason`, so an admin can fix a broken ConfigMap in one pass.

Invariants:
1. A `Policy` object is always fully cross-validated: every type, profile and team it names exists.
2. `parse_policy` never raises anything but `PolicyInvalid`, whatever the input text.
3. An optional 4th key, `accelerators.yaml`, adds or overrides catalog types; it is applied before
   any cross-check so profiles may name the new types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from accel.cluster.catalog import Catalog

SETTINGS_FILE = "settings.yaml"
PROFILES_FILE = "profiles.yaml"
TEAMS_FILE = "teams.yaml"
ACCELERATORS_FILE = "accelerators.yaml"
POLICY_FILES = (SETTINGS_FILE, PROFILES_FILE, TEAMS_FILE, ACCELERATORS_FILE)
ALL_TYPES = "*"
MIG_PROFILE_PATTERN = re.compile(r"^\d+g\.\d+gb(\+me|\+gfx|-me)?$")
ALWAYS_EXCLUDED_NAMESPACES = ("kube-system",)


class PolicyError(BaseModel):
    """One problem in a policy, located precisely."""

    model_config = ConfigDict(frozen=True)

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(top level)'}: {self.message}"


class PolicyInvalid(Exception):
    """The policy has one or more errors; `errors` lists all of them."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class Mode(StrEnum):
    ENFORCE = "enforce"
    WARN = "warn"
    DRY_RUN = "dry-run"


class Sharing(StrEnum):
    EXCLUSIVE = "exclusive"
    TIME_SLICED = "time-sliced"
    MIG = "mig"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ScoringWeights(_Model):
    """Extender prioritize weights; each component is normalised to 0..10 before weighting."""

    preference: float = Field(default=3.0, ge=0)
    topology: float = Field(default=2.0, ge=0)
    fragmentation: float = Field(default=2.0, ge=0)
    # Cheapest, most plentiful type first for pods that allow several (accel.placement.score rule 5);
    # above fragmentation so that premium GPUs stay free for the pods that can only use them.
    scarcity: float = Field(default=4.0, ge=0)


class ScoringSettings(_Model):
    weights: ScoringWeights = Field(default_factory=ScoringWeights)
    # binpack fills used nodes first (keeps whole nodes free for big jobs); spread balances load.
    strategy: Literal["binpack", "spread"] = "binpack"
    # Half-life, in observed pods, of the learned workload histogram used by the fragmentation score.
    workload_half_life: float = Field(default=2000.0, alias="workloadHalfLife", gt=0)
    assume_ttl_seconds: float = Field(default=30.0, alias="assumeTTLSeconds", gt=0)
    # How long the leaf chosen for a job's first pod stays held for its remaining pods.
    job_hold_ttl_seconds: float = Field(default=120.0, alias="jobHoldTTLSeconds", gt=0)


class QuotaSettings(_Model):
    # A reservation made at admission expires if the pod never shows up in the watch.
    reservation_ttl_seconds: float = Field(default=120.0, alias="reservationTTLSeconds", gt=0)


class EstimateSettings(_Model):
    """Assumptions behind training-time estimates; echoed in every answer."""

    mfu: float = Field(default=0.40, gt=0, le=1, description="model FLOPs utilisation")
    flops_per_param_token: float = Field(default=6.0, alias="flopsPerParamToken", gt=0)
    scaling_efficiency: float = Field(default=0.90, alias="scalingEfficiency", gt=0, le=1)
    optimizer_bytes_per_param: float = Field(default=12.0, alias="optimizerBytesPerParam", ge=0)
    activation_overhead: float = Field(default=0.20, alias="activationOverhead", ge=0)


class ApiSettings(_Model):
    redact_node_names: bool = Field(default=False, alias="redactNodeNames")
    # Keyed redaction (HMAC-SHA256): a file holding the key, mounted from a Secret. None: a random
    # key per process (redacted names then change on every restart and differ between replicas).
    redaction_key_file: str | None = Field(default=None, alias="redactionKeyFile", min_length=1)
    trusted_proxy_header: str | None = Field(default=None, alias="trustedProxyHeader")
    # How a connection proves it comes from that proxy: a verified client certificate (the API's
    # --client-ca) whose CN is in trustedProxyNames, or a loopback peer (the proxy is a sidecar).
    trusted_proxy_from: Literal["clientCertificate", "loopback"] = Field(
        default="clientCertificate", alias="trustedProxyFrom"
    )
    trusted_proxy_names: tuple[str, ...] = Field(
        default=("accel-api-proxy",), alias="trustedProxyNames", min_length=1
    )
    max_staleness_seconds: float = Field(default=60.0, alias="maxStalenessSeconds", gt=0)
    # Where `accel usage` / GET /api/usage read the chargeback counters back (e.g.
    # http://prometheus-operated.monitoring:9090); none = computed from the pods in the cluster now.
    prometheus_url: str | None = Field(default=None, alias="prometheusUrl", pattern=r"^https?://")
    # Who may read every team's GPU-hours and cost from GET /api/usage (FinOps, admins): callers with
    # one of these groups. Everyone else sees their own teams' rows only, an anonymous caller none:
    # who runs what, and what it costs, is each team's own business (issue 21).
    usage_admin_groups: tuple[str, ...] = Field(default=("system:masters",), alias="usageAdminGroups")


class Settings(_Model):
    mode: Mode = Mode.ENFORCE
    team_label: str = Field(default="team", alias="teamLabel", min_length=1)
    required_pod_labels: tuple[str, ...] = Field(default=(), alias="requiredPodLabels")
    default_profile: str | None = Field(default=None, alias="defaultProfile")
    # Pod label set to the pod's team at admission (OpenCost / Kubecost allocate by pod label);
    # none = no label is added.
    team_pod_label: str | None = Field(default=None, alias="teamPodLabel", min_length=1)
    excluded_namespaces: tuple[str, ...] = Field(default=("kube-system",), alias="excludedNamespaces")
    scheduler_name: str | None = Field(default=None, alias="schedulerName")
    max_gpus_per_pod: int | None = Field(default=None, alias="maxGpusPerPod", ge=1)
    # May a pod's PriorityClass evict another team's pods (accel.placement.preempt rule 4)? Off by
    # default: any author may name any PriorityClass, so on would let one team evict another.
    cross_team_preemption: bool = Field(default=False, alias="crossTeamPreemption")
    # Namespaces whose OpenDataHub HardwareProfiles are accel profiles (accel.policy.loading): the
    # dashboard's own (ODH, Red Hat OpenShift AI). A HardwareProfile elsewhere is ignored: it could be
    # written by a namespace's users, and would otherwise add a profile every team may use (with its
    # own price) or, by clashing with a name, freeze every later policy change.
    hardware_profile_namespaces: tuple[str, ...] = Field(
        default=("opendatahub", "redhat-ods-applications"), alias="hardwareProfileNamespaces"
    )
    topology_keys: Mapping[str, tuple[str, ...]] | None = Field(default=None, alias="topologyKeys")
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    estimates: EstimateSettings = Field(default_factory=EstimateSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @field_validator("excluded_namespaces")
    @classmethod
    def _always_exclude_kube_system(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*ALWAYS_EXCLUDED_NAMESPACES, *value)))


class AcceleratorRef(_Model):
    type: str


class GpuCounts(_Model):
    default: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=1)


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")


class Profile(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)
    display_name: str = Field(default="", alias="displayName")
    description: str = ""
    accelerators: tuple[AcceleratorRef, ...] = ()  # ordered by preference; empty = any GPU
    sharing: Sharing = Sharing.EXCLUSIVE
    mig_profile: str | None = Field(default=None, alias="migProfile")
    # Time-slicing: replicas per GPU (a replica counts 1/replicas of a GPU against quota) and the
    # resource name the device plugin advertises (`nvidia.com/gpu.shared` with renameByDefault).
    replicas: int | None = Field(default=None, ge=1)
    shared_resource_name: str = Field(default="nvidia.com/gpu.shared", alias="sharedResourceName")
    gpus: GpuCounts = Field(default_factory=GpuCounts)
    tolerations: tuple[Toleration, ...] = ()
    node_selector: Mapping[str, str] = Field(default_factory=dict, alias="nodeSelector")
    cost_per_gpu_hour: Decimal | None = Field(default=None, alias="costPerGpuHour", ge=0)
    enabled: bool = True
    # Kueue LocalQueue the profile's pods are queued in (ODH Queue-scheduled HardwareProfiles):
    # Kueue owns their quota, accel does not charge it again (README "OpenDataHub and Kueue").
    kueue_local_queue: str | None = Field(default=None, alias="kueueLocalQueue", min_length=1)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(ref.type for ref in self.accelerators)

    @property
    def is_generic(self) -> bool:
        return not self.accelerators

    @property
    def title(self) -> str:
        return self.display_name or self.name


class Team(_Model):
    name: str = Field(min_length=1, max_length=63)
    quota: Mapping[str, Decimal] = Field(default_factory=dict)  # canonical type or "*" -> GPU-equivalents
    allowed_profiles: tuple[str, ...] | None = Field(default=None, alias="allowedProfiles")  # None = all
    allowed_types: tuple[str, ...] | None = Field(default=None, alias="allowedTypes")  # None = all
    default_profile: str | None = Field(default=None, alias="defaultProfile")
    # Kueue admits this team's queued workloads (its namespaces are in Kueue's managed set, with the
    # pod or job integrations that gate them). Only then does a pod's `kueue.x-k8s.io/queue-name`
    # label, which its author writes, hand the pod's quota to Kueue (accel.policy.kueue).
    kueue_managed: bool = Field(default=False, alias="kueueManaged")

    @field_validator("quota", mode="before")
    @classmethod
    def _quota_numbers(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for key, amount in value.items():
                if isinstance(amount, bool) or not isinstance(amount, int | float | str | Decimal):
                    raise ValueError(f"quota for {key!r} must be a number of GPUs, got {amount!r}")
        return value

    @field_validator("quota")
    @classmethod
    def _quota_non_negative(cls, value: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
        for key, amount in value.items():
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"quota for {key!r} must be a non-negative number of GPUs, got {amount}")
        return value


class Policy(_Model):
    """A complete, cross-validated policy."""

    settings: Settings = Field(default_factory=Settings)
    profiles: tuple[Profile, ...] = ()
    teams: tuple[Team, ...] = ()

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)

    @property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)


class ParsedPolicy(BaseModel):
    """A policy together with the catalog it was validated against (overrides applied)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    policy: Policy
    catalog: Catalog
