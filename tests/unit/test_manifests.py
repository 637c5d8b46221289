"""Static checks of manifests/: they parse, assemble, validate, and agree with the code.

Cross-references checked: Service selectors/targetPorts vs pod templates, webhook paths vs the
apps' ROUTES, probes vs served paths, ServiceAccounts, RBAC vs kube/permissions.py API_CALLS
(exactly: nothing missing, nothing extra), scheduler extender config vs the catalog, metric
names vs the contract, container commands vs the CLI contract.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

from tests.unit import rbac_model
from tests.unit.kustomize_lite import KustomizeError, build, load_documents, pod_specs

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KIND_OVERLAY = MANIFESTS / "overlays" / "kind"
MONITORED_OVERLAY = MANIFESTS / "overlays" / "kind-monitoring"  # kind + the opt-in monitoring component
MONITORING_COMPONENT = MANIFESTS / "components" / "monitoring"
NS = "accel-system"
K8S_VERSION = "1.31.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no built-in schema; checked structurally below
COMPONENTS = ("webhook", "extender", "api")
CONTRACT_METRICS = {
    "accel_http_requests_total", "accel_http_request_duration_seconds_bucket", "accel_http_rejected_total",
    "accel_admission_decisions_total", "accel_quota_used_gpus", "accel_quota_limit_gpus",
    "accel_tls_cert_expiry_timestamp_seconds", "accel_extender_requests_total", "accel_extender_bind_total",
    "accel_cluster_state_fresh", "accel_policy_reload_total", "accel_quota_ledger_bytes",
    # chargeback counters and their recording rules (team_type:accel_gpu_hours:increase1h, ...)
    "accel_gpu_seconds_total", "accel_gpu_cost_total", "accel_gpu_hours", "accel_gpu_cost",
}  # fmt: skip
MIG_PROFILES = [
    "1g.5gb",
    "1g.10gb",
    "2g.10gb",
    "3g.20gb",
    "4g.20gb",
    "7g.40gb",
    "1g.20gb",
    "2g.20gb",
    "3g.40gb",
    "4g.40gb",
    "7g.80gb",
    "1g.6gb",
    "2g.12gb",
    "4g.24gb",
    "1g.12gb",
    "1g.24gb",
    "2g.24gb",
    "3g.47gb",
    "4g.47gb",
    "7g.94gb",
    "1g.18gb",
    "1g.35gb",
    "2g.35gb",
    "3g.71gb",
    "4g.71gb",
    "7g.141gb",
    "1g.23gb",
    "1g.45gb",
    "2g.45gb",
    "3g.90gb",
    "4g.90gb",
    "7g.180gb",
]
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return build(KIND_OVERLAY)


@pytest.fixture(scope="module")
def monitored() -> list[Obj]:
    return build(MONITORED_OVERLAY)


def test_monitoring_is_an_opt_in_component() -> None:
    """The plain install needs no prometheus-operator CRDs; the monitored overlay adds exactly the
    component's objects (docs/deploy.md shows both installs)."""
    operator_kinds = {"ServiceMonitor", "PrometheusRule"}
    for overlay in (MANIFESTS / "base", KIND_OVERLAY):
        found = {o["kind"] for o in build(overlay)} & operator_kinds
        assert not found, f"{overlay.relative_to(MANIFESTS)} needs prometheus-operator CRDs: {found}"
    plain, monitored = build(KIND_OVERLAY), build(MONITORED_OVERLAY)
    added = {(o["kind"], o["metadata"]["name"]) for o in monitored} - {
        (o["kind"], o["metadata"]["name"]) for o in plain
    }
    assert added == {
        ("ServiceMonitor", "accel"),
        ("PrometheusRule", "accel"),
        ("ConfigMap", "accel-grafana-dashboard"),
    }
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "kubectl apply --server-side -k manifests/overlays/kind\n" in deploy
    assert "kubectl apply --server-side -k manifests/overlays/kind-monitoring" in deploy
    assert "- ../../components/monitoring" in deploy


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected exactly one {kind}/{name}, found {len(hits)}"
    return hits[0]


def of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds]


def containers(obj: Obj) -> Iterator[Obj]:
    for pod in pod_specs(obj):
        yield from pod.get("containers", []) + pod.get("initContainers", [])


# --- parsing and assembly -----------------------------------------------------------------------

POLICY_DIR = MANIFESTS / "base" / "policy"  # the sample accel policy, not Kubernetes objects
YAML_FILES = sorted(p for p in MANIFESTS.rglob("*.yaml") if POLICY_DIR not in p.parents)


@pytest.mark.parametrize("path", YAML_FILES, ids=[str(p.relative_to(MANIFESTS)) for p in YAML_FILES])
def test_every_yaml_file_parses_into_objects_with_kind_and_name(path: Path) -> None:
    for doc in load_documents(path):
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: document without apiVersion/kind"
        if doc["kind"] not in ("Kustomization", "Component"):
            assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} without metadata.name"


def test_dashboard_json_parses_and_every_panel_has_queries() -> None:
    dashboard = json.loads((MONITORING_COMPONENT / "accel-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert all(panel["targets"] for panel in dashboard["panels"])


@pytest.mark.parametrize(
    "overlay", [MANIFESTS / "base", KIND_OVERLAY, MONITORED_OVERLAY], ids=["base", "kind", "kind-monitoring"]
)
def test_assembly_gives_unique_objects(overlay: Path) -> None:
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in build(overlay)]
    assert len(keys) == len(set(keys)), f"duplicate objects: {[k for k in keys if keys.count(k) > 1]}"
    assert len(keys) > 40


def _kubectl_kustomize_works() -> bool:
    if shutil.which("kubectl") is None:
        return False
    probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _kubectl_kustomize_works(), reason="kubectl (with kustomize) not on PATH; lite build only"
)
@pytest.mark.parametrize(
    "overlay", [MANIFESTS / "base", KIND_OVERLAY, MONITORED_OVERLAY], ids=["base", "kind", "kind-monitoring"]
)
def test_lite_assembly_equals_real_kustomize(overlay: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],  # default load restrictor, as `kubectl apply -k`
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    real = {_key(o): o for o in yaml.safe_load_all(out.stdout) if o}
    lite = {_key(o): o for o in build(overlay)}
    assert sorted(real) == sorted(lite)
    for key, obj in lite.items():
        assert obj == real[key], f"{key} differs between kustomize_lite and kustomize"


def _key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def test_built_in_kinds_validate_against_the_kubernetes_schema(objects: list[Obj]) -> None:
    errors = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # CRDs: no schema in kubernetes-validate; see the monitoring tests below
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{_key(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_namespaced_objects_live_in_accel_system(objects: list[Obj]) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                      "ValidatingWebhookConfiguration"}  # fmt: skip
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert ns is None, _key(obj)
        elif obj["metadata"]["name"] == "accel-scheduler-auth-reader":
            assert ns == "kube-system"  # must sit next to the Role it binds
        else:
            assert ns == NS, _key(obj)


# --- workloads ----------------------------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "Job", "CronJob")


def test_every_pod_is_locked_down(objects: list[Obj]) -> None:
    for obj in of_kind(objects, *WORKLOAD_KINDS):
        for pod in pod_specs(obj):
            assert pod["securityContext"]["runAsNonRoot"] is True, _key(obj)
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, _key(obj)
            assert any(v.get("emptyDir") is not None and v["name"] == "tmp" for v in pod["volumes"]), _key(
                obj
            )
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, _key(
                    obj
                )
                assert sc["capabilities"] == {"drop": ["ALL"]}, _key(obj)
                assert {"mountPath": "/tmp", "name": "tmp"} in c["volumeMounts"], _key(obj)
                assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], _key(obj)


@pytest.mark.parametrize("component,replicas", [("webhook", 3), ("extender", 2), ("api", 2)])
def test_server_deployment_follows_the_command_contract(
    objects: list[Obj], component: str, replicas: int
) -> None:
    dep = find(objects, "Deployment", f"accel-{component}")
    assert dep["spec"]["replicas"] == replicas
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"accel-{component}"
    (c,) = pod["containers"]
    # The webhook replicas also listen for each other (the quota ledger leader, webhook/peer.py).
    peers = ["--peer-port", "8444", "--peer-cert-dir", "/etc/accel/peer"] if component == "webhook" else []
    assert c["args"] == [
        "serve", component, "--port", "8443", "--cert-dir", "/etc/accel/tls", "--metrics-port", "8080", *peers
    ]
    if component == "webhook":  # advertised at the pod IP; the client certificate from the certs Job
        assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in c["env"]
        peer = next(v for v in pod["volumes"] if v["name"] == "peer")
        assert peer["secret"]["secretName"] == "accel-webhook-peer"
    assert {"name": "ACCEL_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in c[
        "env"
    ]
    assert {"name": "tls", "mountPath": "/etc/accel/tls", "readOnly": True} in c["volumeMounts"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "accel-webhook-tls"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
        "podAffinityTerm"
    ]
    assert (
        anti["labelSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    pdb = find(objects, "PodDisruptionBudget", f"accel-{component}")
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert 0 < pdb["spec"]["minAvailable"] < replicas


def test_probes_are_https_on_served_paths(objects: list[Obj]) -> None:
    served = _served_probe_paths()
    for name in ("accel-webhook", "accel-extender", "accel-api", "accel-scheduler"):
        dep = find(objects, "Deployment", name)
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                get = c[probe]["httpGet"]
                assert get["scheme"] == "HTTPS" and get["port"] in port_names, f"{name} {probe}"
                if name != "accel-scheduler" and served is not None:
                    assert get["path"] in served, f"{name} {probe} {get['path']} is not served"


def _served_probe_paths() -> set[str] | None:
    """Paths the shared server plumbing registers, read from a real app (None if not built yet)."""
    try:
        app_mod = importlib.import_module("serving.app")
        metrics_mod = importlib.import_module("serving.metrics")
        app = app_mod.make_base_app(name="probe", metrics=metrics_mod.Metrics(), max_body_bytes=1024,
                                    max_concurrency=1, ready=lambda: (True, ""))  # fmt: skip
    except (ImportError, TypeError, AttributeError):
        return None
    return {r.canonical for r in app.router.resources()}


def test_services_select_one_deployment_and_target_a_container_port(objects: list[Obj]) -> None:
    deployments = of_kind(objects, "Deployment")
    for svc in of_kind(objects, "Service"):
        selector = svc["spec"]["selector"].items()
        matched = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)} Deployments"
        ports = [p for c in containers(matched[0]) for p in c["ports"]]
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert any(p["name"] == target or p["containerPort"] == target for p in ports), (svc, target)
            assert (port["name"], port["port"]) in {("https", 443), ("metrics", METRICS_PORT)}, svc


def test_every_referenced_service_account_exists(objects: list[Obj]) -> None:
    accounts = {o["metadata"]["name"] for o in of_kind(objects, "ServiceAccount")}
    assert accounts == {"accel-webhook", "accel-extender", "accel-api", "accel-scheduler", "accel-certs"}
    for obj in of_kind(objects, *WORKLOAD_KINDS):
        for pod in pod_specs(obj):
            assert pod["serviceAccountName"] in accounts, _key(obj)
    for binding in of_kind(objects, "RoleBinding", "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            assert (
                subject["kind"] == "ServiceAccount"
                and subject["name"] in accounts
                and subject["namespace"] == NS
            )


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_cert_jobs_run_certs_ensure_as_accel_certs(objects: list[Obj], kind: str) -> None:
    obj = find(objects, kind, "accel-certs")
    (pod,) = pod_specs(obj)
    assert pod["serviceAccountName"] == "accel-certs"
    assert pod["containers"][0]["args"] == [
        "certs", "ensure", "--namespace", NS, "--secret", "accel-webhook-tls",
        "--service", "accel-webhook", "--service", "accel-extender", "--service", "accel-api",
        "--webhook-config", "accel-mutate", "--webhook-config", "accel-validate",
        "--client", "accel-scheduler-client=accel-scheduler",
        "--client", "accel-webhook-peer=accel-webhook",
    ]  # fmt: skip


def test_policy_configmap_is_generated_from_the_examples(objects: list[Obj]) -> None:
    cm = find(objects, "ConfigMap", "accel-policy")
    expected = {
        f: (ROOT / "examples" / "policy" / f).read_text()
        for f in ("settings.yaml", "profiles.yaml", "teams.yaml")
    }
    assert cm["data"] == expected
    assert cm["metadata"]["namespace"] == NS


# --- admission webhooks -------------------------------------------------------------------------

WEBHOOKS = [
    ("MutatingWebhookConfiguration", "accel-mutate", "mutate.pods.accel.dev", "/mutate", "None"),
    (
        "ValidatingWebhookConfiguration",
        "accel-validate",
        "validate.pods.accel.dev",
        "/validate",
        "NoneOnDryRun",
    ),
]


UPDATE_HOOK = "validate-update.pods.accel.dev"


def _hook(objects: list[Obj], kind: str, name: str, hook: str) -> Obj:
    """One webhook entry by name; each name appears once in its configuration."""
    (webhook,) = [w for w in find(objects, kind, name)["webhooks"] if w["name"] == hook]
    return webhook


def test_webhook_configurations_hold_exactly_the_known_entries(objects: list[Obj]) -> None:
    mutating = find(objects, "MutatingWebhookConfiguration", "accel-mutate")["webhooks"]
    validating = find(objects, "ValidatingWebhookConfiguration", "accel-validate")["webhooks"]
    assert [w["name"] for w in mutating] == ["mutate.pods.accel.dev"]
    assert [w["name"] for w in validating] == ["validate.pods.accel.dev", UPDATE_HOOK]


@pytest.mark.parametrize("kind,name,hook,path,side_effects", WEBHOOKS, ids=["mutate", "validate"])
def test_webhook_configuration_contract(objects: list[Obj], kind: str, name: str, hook: str, path: str,
                                        side_effects: str) -> None:  # fmt: skip
    webhook = _hook(objects, kind, name, hook)
    assert webhook["sideEffects"] == side_effects
    assert webhook["failurePolicy"] == "Fail" and 1 <= webhook["timeoutSeconds"] <= 30
    assert webhook["admissionReviewVersions"] == ["v1"]
    service = webhook["clientConfig"]["service"]
    assert (service["namespace"], service["name"], service["path"]) == (NS, "accel-webhook", path)
    svc = find(objects, "Service", "accel-webhook")
    assert service["port"] in {p["port"] for p in svc["spec"]["ports"]}
    assert "caBundle" not in webhook["clientConfig"], (
        "caBundle is injected by `accel certs ensure`, never committed"
    )
    assert webhook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"], "scope": "Namespaced"}]  # fmt: skip
    (expr,) = webhook["namespaceSelector"]["matchExpressions"]
    assert expr == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NS]}
    if kind == "MutatingWebhookConfiguration":
        assert webhook["reinvocationPolicy"] == "IfNeeded"


@pytest.mark.parametrize("kind,name,hook,path,side_effects", WEBHOOKS, ids=["mutate", "validate"])
def test_webhook_path_is_served_by_the_webhook_app(
    objects: list[Obj], kind: str, name: str, hook: str, path: str, side_effects: str
) -> None:
    routes = _routes("webhook.app")
    assert path in routes, f"{path} not in webhook.app.ROUTES {routes}"


def test_pod_update_webhook_fails_open_on_updates_only(objects: list[Obj]) -> None:
    """Its own entry: an outage must never block finalizer removal or status updates (issue 21)."""
    webhook = _hook(objects, "ValidatingWebhookConfiguration", "accel-validate", UPDATE_HOOK)
    assert webhook["failurePolicy"] == "Ignore" and webhook["sideEffects"] == "None"
    assert 1 <= webhook["timeoutSeconds"] <= 5
    assert webhook["rules"] == [{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"], "scope": "Namespaced"}]  # fmt: skip
    service = webhook["clientConfig"]["service"]
    where = (service["namespace"], service["name"], service["path"])
    assert where == (NS, "accel-webhook", "/validate-update")
    assert "/validate-update" in _routes("webhook.app")
    (expr,) = webhook["namespaceSelector"]["matchExpressions"]
    assert expr == {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["kube-system", NS]}  # fmt: skip
    text = (MANIFESTS / "base" / "admission" / "validating.yaml").read_text()
    assert "failurePolicy: Ignore" in text and "finalizer removal" in text, "the comment says why Ignore"


def test_extender_verbs_are_served_by_the_extender_app(objects: list[Obj]) -> None:
    routes = _routes("extender.app")
    extender = _scheduler_config(objects)["extenders"][0]
    for verb in ("filterVerb", "prioritizeVerb", "bindVerb", "preemptVerb"):
        assert "/" + extender[verb] in routes, f"/{extender[verb]} not in extender.app.ROUTES {routes}"


def _routes(module_name: str) -> tuple[str, ...]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        pytest.skip(f"{module_name} does not exist yet: route cross-check skipped")
    return tuple(module.ROUTES)


def test_match_conditions_cover_every_accelerator_resource_and_profile_annotation(objects: list[Obj]) -> None:
    for kind, name, hook in [(k, n, h) for k, n, h, *_ in WEBHOOKS] + [
            ("ValidatingWebhookConfiguration", "accel-validate", UPDATE_HOOK)]:
        webhook = _hook(objects, kind, name, hook)
        expression = next(
            c["expression"]
            for c in webhook["matchConditions"]
            if c["name"] == "asks-for-accelerator-or-profile"
        )
        for needle in (
            "'nvidia.com/gpu'",
            "'nvidia.com/gpu.shared'",
            "startsWith('nvidia.com/mig-')",
            "'amd.com/gpu'",
            "'habana.ai/gaudi'",
            "startsWith('gpu.intel.com/')",
            "startsWith('accel.dev/')",
            "'accelerator.opendatahub.io/type'",
            "'opendatahub.io/hardware-profile-name'",
            "object.spec.initContainers",
            "c.resources.requests",
            "c.resources.limits",
        ):
            assert needle in expression, f"{name}: matchCondition does not mention {needle}"
        assert expression.count("(") == expression.count(")")


# --- scheduler ----------------------------------------------------------------------------------


def _scheduler_config(objects: list[Obj]) -> Obj:
    config: Obj = yaml.safe_load(find(objects, "ConfigMap", "accel-scheduler-config")["data"]["config.yaml"])
    return config


def test_scheduler_config_wires_the_extender(objects: list[Obj]) -> None:
    config = _scheduler_config(objects)
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert [p["schedulerName"] for p in config["profiles"]] == ["accel-scheduler"]
    election = config["leaderElection"]
    assert (election["leaderElect"], election["resourceNamespace"], election["resourceName"]) == (
        True,
        NS,
        "accel-scheduler",
    )
    (ext,) = config["extenders"]
    assert ext["urlPrefix"] == "https://accel-extender.accel-system.svc:443/"
    verbs = (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"])
    assert verbs == ("filter", "prioritize", "bind", "preempt")
    assert ext["weight"] > 0 and ext["nodeCacheCapable"] is True and ext["enableHTTPS"] is True
    assert ext["ignorable"] is False and re.fullmatch(r"\d+s", ext["httpTimeout"])
    deployment = find(objects, "Deployment", "accel-scheduler")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"registry\.k8s\.io/kube-scheduler:v1\.(3[0-9])\.\d+", c["image"])
    assert "--config=/etc/accel-scheduler/config.yaml" in c["command"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(ext["tlsConfig"]["caFile"]).parent) in mounts, "caFile is not on a mounted volume"
    assert ext["tlsConfig"]["serverName"] == "accel-extender.accel-system.svc"


def test_managed_resources_list_every_accelerator_name(objects: list[Obj]) -> None:
    managed = _scheduler_config(objects)["extenders"][0]["managedResources"]
    names = [m["name"] for m in managed]
    expected = {
        "nvidia.com/gpu",
        "nvidia.com/gpu.shared",
        "amd.com/gpu",
        "habana.ai/gaudi",
        "gpu.intel.com/i915",
        "gpu.intel.com/xe",
    }
    profiles = set(MIG_PROFILES) | _catalog_mig_profiles()
    expected |= {f"nvidia.com/mig-{p}{s}" for p in profiles for s in ("", ".shared")}
    assert len(names) == len(set(names))
    assert set(names) == expected, f"missing {expected - set(names)}, unexpected {set(names) - expected}"
    assert all(m["ignoredByScheduler"] is False for m in managed)


def _catalog_mig_profiles() -> set[str]:
    """Every value under a `migProfiles` key in accel/data/*.yaml (empty if the catalog is not there)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("migProfiles", "mig_profiles") and isinstance(value, list):
                    found.update(str(v["name"] if isinstance(v, dict) else v) for v in value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted((ROOT / "accel" / "data").glob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    return {p for p in found if not p.endswith(("+me", "+gfx", "-me"))}


# --- RBAC ---------------------------------------------------------------------------------------


def test_no_wildcards_anywhere_in_rbac(objects: list[Obj]) -> None:
    for role in of_kind(objects, "Role", "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: wildcard in {field}"


def test_only_accel_certs_touches_secrets_and_only_its_own(objects: list[Obj]) -> None:
    for account in ("accel-webhook", "accel-extender", "accel-api", "accel-scheduler", "accel-certs"):
        access = rbac_model.access_of(objects, namespace=NS, service_account=account)
        secrets = {g for g in access.grants if g.resource == "secrets"}
        if account != "accel-certs":
            assert not secrets, f"{account} may access secrets: {secrets}"
            continue
        assert {g.namespace for g in secrets} == {NS}
        assert {g.resource_name for g in secrets if g.verb != "create"} == {
            "accel-webhook-tls", "accel-webhook-tls-ca", "accel-scheduler-client", "accel-webhook-peer"}


def _api_calls() -> dict[str, list[rbac_model.Call]]:
    try:
        permissions = importlib.import_module("kube.permissions")
    except ModuleNotFoundError as exc:
        if exc.name != "kube.permissions":
            raise
        pytest.skip("kube/permissions.py does not exist yet: RBAC-vs-code check skipped")
    return {
        component: rbac_model.normalise_calls(calls) for component, calls in permissions.API_CALLS.items()
    }


@pytest.mark.parametrize("component", ["webhook", "extender", "api", "certs"])
def test_rbac_grants_exactly_the_api_calls_the_code_makes(objects: list[Obj], component: str) -> None:
    calls = _api_calls()
    assert component in calls, f"kube.permissions.API_CALLS has no entry for {component!r}"
    access = rbac_model.access_of(objects, namespace=NS, service_account=f"accel-{component}")
    assert not access.builtin_cluster_roles
    missing = rbac_model.missing_grants(calls[component], access.grants, NS)
    excess = rbac_model.excess_grants(calls[component], access.grants, NS)
    assert not missing, f"accel-{component} lacks RBAC for: {missing}"
    assert not excess, f"accel-{component} is granted more than its code uses: {excess}"


def test_scheduler_gets_upstream_roles_plus_its_own_lease(objects: list[Obj]) -> None:
    access = rbac_model.access_of(objects, namespace=NS, service_account="accel-scheduler")
    assert access.builtin_cluster_roles == {"system:kube-scheduler", "system:volume-scheduler",
                                            "extension-apiserver-authentication-reader"}  # fmt: skip
    lease = rbac_model.Call("coordination.k8s.io", "leases", "get", True, ("accel-scheduler",))
    calls = [
        lease,
        *(
            rbac_model.Call(lease.api_group, "leases", v, True, lease.resource_names)
            for v in ("update", "create")
        ),
    ]
    assert not rbac_model.missing_grants(calls, access.grants, NS)
    assert not rbac_model.excess_grants(calls, access.grants, NS)


# --- network and monitoring ---------------------------------------------------------------------


def test_network_policies_deny_by_default_and_open_only_serving_ports(objects: list[Obj]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    assert policies["accel-default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert policies["accel-webhook-ingress"]["ingress"] == [
        {"ports": [{"port": 8443, "protocol": "TCP"}]},
        # the ledger peer port: the other webhook replicas only (and mTLS, webhook/peer.py)
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "accel-webhook"}}}],
         "ports": [{"port": 8444, "protocol": "TCP"}]},
    ]
    (extender_rule,) = policies["accel-extender-ingress"]["ingress"]
    sources = [s["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for s in extender_rule["from"]]
    assert "accel-scheduler" in sources
    deployments = of_kind(objects, "Deployment")
    for spec in policies.values():
        labels = spec["podSelector"].get("matchLabels", {}).items()
        assert any(labels <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments)


def test_only_the_scheduler_reaches_the_extender(objects: list[Obj]) -> None:
    """Issue 21: no namespaceSelector {} (any namespace) and no source without a podSelector."""
    policy = find(objects, "NetworkPolicy", "accel-extender-ingress")["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 8443, "protocol": "TCP"}]
    (scheduler,) = rule["from"]
    assert scheduler == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "accel-scheduler"}}}


METRICS_PORT = 8080


def test_only_prometheus_reaches_the_metrics_listeners(objects: list[Obj]) -> None:
    """Issue 21 residual: the per-team series are served on `--metrics-port` (404 on the serving
    port) and that port is open to Prometheus in the `monitoring` namespace alone."""
    policy = find(objects, "NetworkPolicy", "accel-metrics-ingress")["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": METRICS_PORT, "protocol": "TCP"}]
    (prometheus,) = rule["from"]
    assert prometheus["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert prometheus["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    (selects,) = policy["podSelector"]["matchExpressions"]
    servers = {"accel-webhook", "accel-extender", "accel-api"}
    assert selects["key"] == "app.kubernetes.io/name" and set(selects["values"]) == servers
    for name in servers:
        (c,) = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        args = c["args"]
        assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT), name
        assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in c["ports"], name
        service = find(objects, "Service", name)["spec"]["ports"]
        expected = {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
        assert expected in service, name
    for other in of_kind(objects, "NetworkPolicy"):  # no other policy opens the metrics port
        if other["metadata"]["name"] != "accel-metrics-ingress":
            for r in other["spec"].get("ingress", []):
                assert r.get("ports"), f"{other['metadata']['name']}: a rule without ports opens every port"
                assert METRICS_PORT not in [p["port"] for p in r["ports"]], other["metadata"]["name"]


def test_apiserver_cidr_overlay_narrows_the_webhook_to_an_ip_block() -> None:
    objects = build(MANIFESTS / "overlays" / "apiserver-cidr")
    policy = find(objects, "NetworkPolicy", "accel-webhook-ingress")["spec"]
    assert policy["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 8443, "protocol": "TCP"}]}
    ]
    assert find(objects, "NetworkPolicy", "accel-extender-ingress") == find(
        build(MANIFESTS / "base"), "NetworkPolicy", "accel-extender-ingress"
    )


def test_scheduler_authenticates_to_the_extender_with_the_cert_jobs_client_certificate(
    objects: list[Obj],
) -> None:
    """tlsConfig's certFile/keyFile/caFile lie on the mounted Secret the cert Job keeps, whose CN is the
    one `accel serve extender` accepts by default; the extender verifies against its own ca.crt."""
    from cli.serve import DEFAULT_SCHEDULER_CLIENT

    tls = _scheduler_config(objects)["extenders"][0]["tlsConfig"]
    (c,) = find(objects, "Deployment", "accel-scheduler")["spec"]["template"]["spec"]["containers"]
    volumes = {
        v["name"]: v
        for v in find(objects, "Deployment", "accel-scheduler")["spec"]["template"]["spec"]["volumes"]
    }
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    for key, file in (("certFile", "tls.crt"), ("keyFile", "tls.key"), ("caFile", "ca.crt")):
        path = Path(tls[key])
        assert path.name == file, key
        assert volumes[mounts[str(path.parent)]]["secret"]["secretName"] == "accel-scheduler-client", key
    job_args = pod_specs(find(objects, "Job", "accel-certs")).__next__()["containers"][0]["args"]
    assert f"accel-scheduler-client={DEFAULT_SCHEDULER_CLIENT}" in job_args
    (ext,) = find(objects, "Deployment", "accel-extender")["spec"]["template"]["spec"]["containers"]
    assert (
        "--allow-unauthenticated" not in ext["args"] and "--client-ca" not in ext["args"]
    )  # default: CERT_DIR/ca.crt


def test_api_mounts_the_optional_redaction_key_where_the_readme_says(objects: list[Obj]) -> None:
    spec = find(objects, "Deployment", "accel-api")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (c,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert volumes["redaction"]["secret"] == {
        "secretName": "accel-api-redaction",
        "optional": True,
        "defaultMode": 0o440,
    }
    assert mounts["redaction"] == "/etc/accel/redaction"
    assert "redactionKeyFile: /etc/accel/redaction/key" in (ROOT / "README.md").read_text()


def _promql(objects: list[Obj]) -> list[str]:
    rules = find(objects, "PrometheusRule", "accel")["spec"]["groups"]
    dashboard = json.loads(
        find(objects, "ConfigMap", "accel-grafana-dashboard")["data"]["accel-dashboard.json"]
    )
    return [r["expr"] for g in rules for r in g["rules"]] + [
        t["expr"] for p in dashboard["panels"] for t in p["targets"]
    ]


def test_alerts_and_dashboard_use_only_contract_metrics(monitored: list[Obj]) -> None:
    objects = monitored
    used = {m for expr in _promql(objects) for m in re.findall(r"\baccel_[a-z_]+", expr)}
    assert used <= CONTRACT_METRICS, f"unknown metric names: {used - CONTRACT_METRICS}"
    alerts = {
        r["alert"]
        for g in find(objects, "PrometheusRule", "accel")["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    for needed in (
        "AccelWebhookErrors",
        "AccelWebhookLatencyHigh",
        "AccelAdmissionDenialsSpike",
        "AccelQuotaNearLimit",
        "AccelCertExpiringSoon",
        "AccelExtenderErrors",
    ):
        assert needed in alerts
    assert (ROOT / "docs" / "deploy.md").is_file()
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert not [a for a in alerts if a not in docs], "every alert is explained in docs/deploy.md"


def test_every_alert_and_panel_query_is_valid_promql(monitored: list[Obj]) -> None:
    objects = monitored
    """A rule whose expression does not parse never fires, silently; Grafana's $__rate_interval
    is substituted as Grafana would before the query reaches Prometheus."""
    exprs = _promql(objects)
    assert len(exprs) > 10
    for expr in exprs:
        try:
            promql_parser.parse(expr.replace("$__rate_interval", "5m"))
        except Exception as exc:  # the parser raises its own error types
            pytest.fail(f"invalid PromQL: {expr!r}: {exc}")


def test_dashboard_and_service_monitor_are_discoverable(monitored: list[Obj]) -> None:
    objects = monitored
    assert (
        find(objects, "ConfigMap", "accel-grafana-dashboard")["metadata"]["labels"]["grafana_dashboard"]
        == "1"
    )
    monitor = find(objects, "ServiceMonitor", "accel")["spec"]
    selected = set(monitor["selector"]["matchExpressions"][0]["values"])
    assert selected == {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    (endpoint,) = monitor["endpoints"]
    assert endpoint["scheme"] == "http" and endpoint["path"] == "/metrics" and endpoint["port"] == "metrics"


# --- image --------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER 65532(:65532)?$", text, re.M)
    assert 'ENTRYPOINT ["accel"]' in text
    for env in ("MPLCONFIGDIR=/tmp", "PYTHONDONTWRITEBYTECODE=1"):
        assert env in text
    packages = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M))
    sources = {s for line in copied for s in line.split()}
    for package in {p.rstrip("*") for p in packages}:
        assert package in sources, f"Dockerfile does not COPY package {package}"
    ignored = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"
    ]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        assert source not in ignored, f"COPY source {source} is excluded by .dockerignore"


def test_the_image_runs_without_the_plot_extra() -> None:
    """The Dockerfile installs accel without extras: no server or CLI path may import matplotlib
    at import time (a fresh interpreter where `import matplotlib` fails)."""
    assert "matplotlib" not in " ".join(_pyproject()["project"]["dependencies"])
    assert "matplotlib" in " ".join(_pyproject()["project"]["optional-dependencies"]["plot"])
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import webhook.app, extender.app, api.app, certs.issue, kube.real, cli.serve, cli.certs_cmd\n"
        "from cli.main import main\n"
        "main(['serve', '--help'])\n"  # argparse exits 0 after printing
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def _pyproject() -> Obj:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_sample_policy_lives_in_the_base_and_examples_link_to_it() -> None:
    for name in ("settings.yaml", "profiles.yaml", "teams.yaml"):
        assert (ROOT / "examples" / "policy" / name).resolve() == (POLICY_DIR / name).resolve()


def test_lite_refuses_files_outside_the_kustomization_like_kustomize(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("a: 1\n")
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text(
        "configMapGenerator:\n- name: x\n  files: [outside.yaml=../outside.yaml]\n"
        "  options: {disableNameSuffixHash: true}\n"
    )
    with pytest.raises(KustomizeError, match=r"not in or below .*default load restrictor"):
        build(base)
