"""Every Kubernetes API call accel makes, per component: the source of truth for RBAC.

`API_CALLS` is data, kept in sync with the code two ways: `CALLS_BY_METHOD` says which calls each
method of `kube/real.py` makes (a test checks every method is listed and, against a loopback API
server, that the requests it sends match), and the manifests test checks that the RBAC Roles and
ClusterRoles grant exactly `API_CALLS` (no more, no less).
`namespaced_to_controller_ns=True` means a Role in the controller namespace; otherwise ClusterRole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kube.names import (
    CHARGEBACK_CONFIGMAP,
    HARDWARE_PROFILE_KINDS,
    LEDGER_CONFIGMAP,
    LEDGER_LEADER_LEASE,
    RESOURCES,
    SCHEDULER_CLIENT_SECRET,
    WEBHOOK_PEER_SECRET,
    WEBHOOK_TLS_SECRET,
)

HARDWARE_PROFILE_GROUPS: Final = tuple(RESOURCES[kind].api_group for kind in HARDWARE_PROFILE_KINDS)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One RBAC-relevant call: `verb` on `api_group`/`resource` (with subresource, e.g. pods/binding)."""

    api_group: str
    resource: str
    verb: str
    namespaced_to_controller_ns: bool = False
    resource_names: tuple[str, ...] = ()


def _watch(resource: str, *, controller_ns: bool = False, get: bool = False) -> list[ApiCall]:
    verbs = ("get", "list", "watch") if get else ("list", "watch")
    return [ApiCall("", resource, verb, controller_ns) for verb in verbs]


_INFORMERS: Final = [*_watch("nodes"), *_watch("pods"), *_watch("namespaces"),
                     *_watch("configmaps", controller_ns=True, get=True),
                     # OpenDataHub HardwareProfiles (profiles from custom resources), both API groups
                     *(ApiCall(group, "hardwareprofiles", verb)
                       for group in HARDWARE_PROFILE_GROUPS for verb in ("list", "watch"))]
_LEDGER: Final = [
    ApiCall("", "configmaps", verb, True, (LEDGER_CONFIGMAP,)) for verb in ("get", "update")
] + [
    ApiCall("", "configmaps", "create", True)  # RBAC cannot restrict create by name
]
# The ledger leader's Lease (serving/ledger_leader.py): one writer of the ledger at a time.
_LEDGER_LEADER: Final = [
    ApiCall("coordination.k8s.io", "leases", verb, True, (LEDGER_LEADER_LEASE,)) for verb in ("get", "update")
] + [
    ApiCall("coordination.k8s.io", "leases", "create", True)  # RBAC cannot restrict create by name
]
_EVENTS: Final = [ApiCall("", "events", "create")]
_WEBHOOK_CONFIGS: Final = [
    ApiCall("admissionregistration.k8s.io", resource, verb, False, (name,))
    for resource, name in (("mutatingwebhookconfigurations", "accel-mutate"),
                           ("validatingwebhookconfigurations", "accel-validate"))
    for verb in ("get", "patch")
]

API_CALLS: Final[dict[str, list[ApiCall]]] = {
    "webhook": [*_INFORMERS, *_LEDGER, *_LEDGER_LEADER, *_EVENTS],
    "extender": [*_INFORMERS, ApiCall("", "pods/binding", "create"), *_EVENTS],
    "api": [
        *_INFORMERS,
        ApiCall("authentication.k8s.io", "tokenreviews", "create"),
        # chargeback watermark (serving.chargeback): compare-and-swap on one ConfigMap
        *(ApiCall("", "configmaps", verb, True, (CHARGEBACK_CONFIGMAP,)) for verb in ("get", "update")),
        ApiCall("", "configmaps", "create", True),
        # detected types and availability written as annotations on each HardwareProfile
        *(ApiCall(group, "hardwareprofiles", "patch") for group in HARDWARE_PROFILE_GROUPS),
    ],
    "certs": [
        # The serving Secret and the CA Secret (`<serving>-ca`, kept apart so the CA key never
        # reaches the serving pods, which mount the serving Secret whole), kube-scheduler's
        # client certificate for the extender, and the webhook replicas' peer client certificate.
        *(
            ApiCall(
                "",
                "secrets",
                verb,
                True,
                (WEBHOOK_TLS_SECRET, f"{WEBHOOK_TLS_SECRET}-ca", SCHEDULER_CLIENT_SECRET,
                 WEBHOOK_PEER_SECRET),
            )
            for verb in ("get", "update")
        ),
        ApiCall("", "secrets", "create", True),  # RBAC cannot restrict create by name
        *_WEBHOOK_CONFIGS,
    ],
}

# Which calls each implementation method makes (RBAC view; `resource_names` and scope omitted).
CALLS_BY_METHOD: Final[dict[str, list[tuple[str, str, str]]]] = {
    "KubeObjectSource.list": [("", "<kind>", "list")],
    "KubeObjectSource.watch": [("", "<kind>", "watch")],
    "KubeCasStore.read": [("", "configmaps", "get")],
    "KubeCasStore.write": [("", "configmaps", "create"), ("", "configmaps", "update")],
    "KubeLeaseStore.read_lease": [("coordination.k8s.io", "leases", "get")],
    "KubeLeaseStore.write_lease": [("coordination.k8s.io", "leases", "create"),
                                   ("coordination.k8s.io", "leases", "update")],
    "KubeBinder.bind": [("", "pods/binding", "create")],
    "KubeEventRecorder.record": [("", "events", "create")],
    "KubeTokenReviewer.review": [("authentication.k8s.io", "tokenreviews", "create")],
    "KubeAnnotator.annotate": [("<group>", "<kind>", "patch")],
}
