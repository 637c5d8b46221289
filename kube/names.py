"""Object names and resource coordinates the `kube/` package shares with the rest of accel.

These spellings are contracts (see shared/docs/design.md "names on objects"): changing one breaks
manifests, RBAC and users' `kubectl` habits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_CONTROLLER_NAMESPACE: Final = "accel-system"
POLICY_CONFIGMAP: Final = "accel-policy"
LEDGER_CONFIGMAP: Final = "accel-quota-ledger"
LEDGER_KEY: Final = "ledger.json"
LEDGER_LEADER_LEASE: Final = "accel-quota-ledger-leader"  # who writes the ledger for all replicas
CHARGEBACK_CONFIGMAP: Final = (
    "accel-chargeback"  # chargeback watermark + counting replica (serving.chargeback)
)
WEBHOOK_TLS_SECRET: Final = "accel-webhook-tls"
SCHEDULER_CLIENT_SECRET: Final = (
    "accel-scheduler-client"  # kube-scheduler's client certificate for the extender
)
WEBHOOK_PEER_SECRET: Final = "accel-webhook-peer"  # the webhook replicas' peer client certificate
EVENT_SOURCE_COMPONENT: Final = "accel"

Kind = Literal["nodes", "pods", "namespaces", "configmaps", "leases",
               "hardwareprofiles.infrastructure.opendatahub.io", "hardwareprofiles.dashboard.opendatahub.io"]
# OpenDataHub HardwareProfiles (custom resources: watched only while their CRD is installed).
HARDWARE_PROFILE_KINDS: Final[tuple[Kind, ...]] = (
    "hardwareprofiles.infrastructure.opendatahub.io", "hardwareprofiles.dashboard.opendatahub.io")
KINDS: Final[tuple[Kind, ...]] = (
    "nodes",
    "pods",
    "namespaces",
    "configmaps",
    "leases",
    *HARDWARE_PROFILE_KINDS,
)


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """Where a kind lives in the REST API: `/{prefix}[/namespaces/{ns}]/{plural}`."""

    api_prefix: str  # "/api/v1" for the core group, "/apis/<group>/<version>" otherwise
    api_group: str  # "" for the core group (RBAC spelling)
    plural: str
    object_kind: str  # the `kind` field of one object, e.g. "Node"
    namespaced: bool

    def collection_path(self, namespace: str | None) -> str:
        """REST path of the collection, across all namespaces when `namespace` is None."""
        if self.namespaced and namespace is not None:
            return f"{self.api_prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.api_prefix}/{self.plural}"


RESOURCES: Final[dict[Kind, ResourceInfo]] = {
    "nodes": ResourceInfo("/api/v1", "", "nodes", "Node", namespaced=False),
    "pods": ResourceInfo("/api/v1", "", "pods", "Pod", namespaced=True),
    "namespaces": ResourceInfo("/api/v1", "", "namespaces", "Namespace", namespaced=False),
    "configmaps": ResourceInfo("/api/v1", "", "configmaps", "ConfigMap", namespaced=True),
    "leases": ResourceInfo("/apis/coordination.k8s.io/v1", "coordination.k8s.io", "leases", "Lease", True),
    "hardwareprofiles.infrastructure.opendatahub.io": ResourceInfo(
        "/apis/infrastructure.opendatahub.io/v1alpha1",
        "infrastructure.opendatahub.io",
        "hardwareprofiles",
        "HardwareProfile",
        True,
    ),
    "hardwareprofiles.dashboard.opendatahub.io": ResourceInfo(
        "/apis/dashboard.opendatahub.io/v1",
        "dashboard.opendatahub.io",
        "hardwareprofiles",
        "HardwareProfile",
        True,
    ),
}

KIND_BY_OBJECT_KIND: Final[dict[str, Kind]] = {
    info.object_kind: kind for kind, info in RESOURCES.items() if kind not in HARDWARE_PROFILE_KINDS}


def kind_of(obj: dict[str, object]) -> Kind | None:
    """The Kind of an object by its `kind` and, for HardwareProfiles, the group of its apiVersion."""
    if obj.get("kind") == "HardwareProfile":
        group = str(obj.get("apiVersion", "")).split("/", 1)[0]
        return next((k for k in HARDWARE_PROFILE_KINDS if RESOURCES[k].api_group == group), None)
    return KIND_BY_OBJECT_KIND.get(str(obj.get("kind")))


def object_key(obj: dict[str, object]) -> str:
    """Store key of an object: `namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("object has no metadata mapping")
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name
