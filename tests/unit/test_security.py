"""Security properties not covered by tests/unit/test_manifests.py (issue 10, "Security").

test_manifests.py already checks: no `*` in any rule, Secrets only for accel-certs and only its
own two, RBAC == kube/permissions.py, pods locked down, Dockerfile `USER 65532`. This file adds
the least-privilege rules a reviewer looks for next: no privilege-escalation verbs, no RBAC or
admission-config writes beyond accel-certs' own two configurations, no pod exec/attach/proxy,
no write on nodes or pods (only the extender's `pods/binding`), nothing bound to a built-in
ClusterRole except the scheduler's upstream roles; the final image stage runs as a non-root
numeric user; the TLS context every server uses refuses TLS < 1.2.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.unit import rbac_model
from tests.unit.kustomize_lite import build

ROOT = Path(__file__).resolve().parents[2]
NS = "accel-system"
ACCOUNTS = ("accel-webhook", "accel-extender", "accel-api", "accel-certs", "accel-scheduler")
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "approve", "sign"}
READ_VERBS = {"get", "list", "watch"}
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return build(ROOT / "manifests" / "overlays" / "kind")


def _grants(objects: list[Obj], account: str) -> frozenset[rbac_model.Grant]:
    return rbac_model.access_of(objects, namespace=NS, service_account=account).grants


@pytest.mark.parametrize("account", ACCOUNTS)
def test_no_privilege_escalation_verbs(objects: list[Obj], account: str) -> None:
    bad = {g for g in _grants(objects, account) if g.verb in ESCALATING_VERBS}
    assert not bad, f"{account} holds escalation verbs: {bad}"


@pytest.mark.parametrize("account", ACCOUNTS)
def test_no_writes_to_rbac_or_service_account_tokens(objects: list[Obj], account: str) -> None:
    bad = {
        g
        for g in _grants(objects, account)
        if (g.api_group == "rbac.authorization.k8s.io" and g.verb not in READ_VERBS)
        or g.resource in ("serviceaccounts/token", "certificatesigningrequests/approval")
    }
    assert not bad, f"{account} may change RBAC or mint tokens: {bad}"


@pytest.mark.parametrize("account", ACCOUNTS)
def test_no_exec_attach_proxy_or_ephemeral_containers(objects: list[Obj], account: str) -> None:
    bad = {
        g
        for g in _grants(objects, account)
        if g.resource in ("pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "nodes/proxy",
                          "pods/ephemeralcontainers")
    }  # fmt: skip
    assert not bad, f"{account} can reach into pods or nodes: {bad}"


@pytest.mark.parametrize("account", ["accel-webhook", "accel-extender", "accel-api", "accel-certs"])
def test_pods_and_nodes_are_read_only_except_binding(objects: list[Obj], account: str) -> None:
    writes = {
        g
        for g in _grants(objects, account)
        if g.resource in ("pods", "nodes", "namespaces", "pods/status", "nodes/status")
        and g.verb not in READ_VERBS
    }
    assert not writes, f"{account} may modify workloads or nodes: {writes}"
    bindings = {g.resource for g in _grants(objects, account) if g.resource == "pods/binding"}
    assert bindings == ({"pods/binding"} if account == "accel-extender" else set())


@pytest.mark.parametrize("account", ACCOUNTS)
def test_admission_configs_writable_only_by_certs_and_only_its_own(objects: list[Obj], account: str) -> None:
    writes = {
        g
        for g in _grants(objects, account)
        if g.api_group == "admissionregistration.k8s.io" and g.verb not in READ_VERBS
    }
    if account != "accel-certs":
        assert not writes, f"{account} may change admission configuration: {writes}"
        return
    assert {(g.resource, g.resource_name) for g in writes} == {
        ("mutatingwebhookconfigurations", "accel-mutate"),
        ("validatingwebhookconfigurations", "accel-validate"),
    }


@pytest.mark.parametrize("account", ["accel-webhook", "accel-extender", "accel-api", "accel-certs"])
def test_our_components_use_no_builtin_cluster_roles(objects: list[Obj], account: str) -> None:
    access = rbac_model.access_of(objects, namespace=NS, service_account=account)
    assert not access.builtin_cluster_roles, f"{account} bound to {access.builtin_cluster_roles}"


def test_no_binding_to_cluster_admin_or_system_groups(objects: list[Obj]) -> None:
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        name = binding["metadata"]["name"]
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), name
        for subject in binding.get("subjects", []):
            assert subject["kind"] == "ServiceAccount", f"{name} binds a {subject['kind']}"
            assert subject["namespace"] == NS, f"{name} binds a ServiceAccount outside {NS}"


def _final_stage(dockerfile: str) -> str:
    return re.split(r"^FROM ", dockerfile, flags=re.M)[-1]


def test_final_image_stage_runs_as_numeric_non_root_user() -> None:
    stage = _final_stage((ROOT / "Dockerfile").read_text())
    users = re.findall(r"^USER (\S+)$", stage, re.M)
    assert users, "the final stage sets no USER: the container would run as root"
    user = users[-1].split(":")
    assert all(part.isdigit() for part in user), (
        f"USER {users[-1]} must be numeric (runAsNonRoot checks UIDs)"
    )
    assert int(user[0]) != 0 and (len(user) == 1 or int(user[1]) != 0), f"USER {users[-1]} is root"
    last_user = stage.rfind("\nUSER ")
    assert stage.find("\nRUN ", last_user) == -1, "no RUN after the final USER may run as root later"


def test_every_server_context_refuses_tls_below_12(tmp_path: Path) -> None:
    from serving.tls import ReloadingTLS
    from tests.integration.tls_fixtures import make_cert_dir

    make_cert_dir(tmp_path)
    context = ReloadingTLS(tmp_path).context
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
