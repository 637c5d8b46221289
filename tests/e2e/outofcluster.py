"""Run `accel serve webhook|extender|api` (and kube-scheduler) on this host against the cluster.

Used by local mode always, and by kind/KUBECONFIG with ACCEL_E2E_OUT_OF_CLUSTER=1.
1. Certificates come from `accel certs create` (one serving certificate for the three Services,
   127.0.0.1 and localhost, and the host address).
   Like the shipped Deployments, each server has its metrics listener (`--metrics-port`, plain
   HTTP; `Servers.metrics_url`), and /metrics on its serving port answers 404.
2. The webhook configurations are the shipped ones (`manifests/`), registered with
   `clientConfig.url` = `https://$ACCEL_E2E_HOST_ADDRESS:<port>/...` and the CA bundle. The API
   server must reach that address: 127.0.0.1 in local mode; for kind the Docker bridge gateway
   (default 172.18.0.1); for a remote cluster a routable address of this host. Before Kubernetes
   1.28 webhooks have no `matchConditions`: they are stripped, so every pod reaches the webhook,
   which must pass pods without accelerators through untouched (test_admission proves it).
3. kube-scheduler (from the control-plane assets or PATH) runs with the shipped scheduler
   configuration, translated to `kubescheduler.config.k8s.io/v1beta3` before 1.25, calling the
   extender over mTLS (its client certificate from `accel certs client`) with the shipped
   `serverName`. Without kube-scheduler, scheduling tests skip.
4. Every process is stopped by its PID (controlplane.Processes), also when start-up fails.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from tests.e2e import cluster, controlplane

SERVERS = ("webhook", "extender", "api")
SERVICES = ("accel-webhook", "accel-extender", "accel-api")
SERVER_READY_S = 60.0
# The first Kubernetes minor versions that have these (older servers need the translation).
MATCH_CONDITIONS_SINCE = 28
SCHEDULER_CONFIG_V1_SINCE = 25


def _accel() -> str:
    return str(Path(sys.executable).with_name("accel"))


@dataclass
class Servers:
    """The accel servers (and scheduler) this run started, and how to reach them."""

    workdir: Path
    host: str
    certs: Path
    kubeconfig: str
    procs: controlplane.Processes
    ports: dict[str, int] = field(default_factory=dict)  # server name -> port of the first one
    metrics_ports: dict[str, int] = field(default_factory=dict)  # server name -> its metrics listener
    running: dict[str, controlplane.Process] = field(default_factory=dict)
    scheduler: controlplane.Process | None = None
    extra: list[controlplane.Process] = field(default_factory=list)  # started by tests
    match_conditions_stripped: bool = False

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    def url(self, name: str, path: str = "") -> str:
        return f"https://127.0.0.1:{self.ports[name]}{path}"

    def metrics_url(self, name: str) -> str:
        """The first `name` server's metrics listener (plain HTTP, as `--metrics-port` serves it)."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def is_ready(self, port: int) -> bool:
        """GET /readyz == 200; a refused or reset connection just means "not yet"."""
        return controlplane.https_ok(f"https://127.0.0.1:{port}/readyz", self.tls_context())

    def start(
        self, name: str, port: int | None = None, *, log_suffix: str = "", args: tuple[str, ...] = ()
    ) -> controlplane.Process:
        """Start one `accel serve NAME` and wait until /readyz answers 200 (or it exits)."""
        process = self.launch(name, port, log_suffix=log_suffix, args=args)
        self.wait_ready(process)
        return process

    def launch(
        self, name: str, port: int | None = None, *, log_suffix: str = "", args: tuple[str, ...] = ()
    ) -> controlplane.Process:
        """Start one `accel serve NAME` without waiting (start several, then `wait_ready` each);
        `args` are more options (e.g. `--reuse-port`)."""
        port = port or controlplane.free_port()
        metrics_port = controlplane.free_port()
        env = os.environ | {"KUBECONFIG": self.kubeconfig, "ACCEL_NAMESPACE": cluster.NS}
        process = self.procs.start(
            f"accel serve {name}{log_suffix}",
            [_accel(), "serve", name, "--host", "127.0.0.1" if self.host == "127.0.0.1" else "0.0.0.0",
             "--port", str(port), "--cert-dir", str(self.certs), "--metrics-port", str(metrics_port), *args],
            self.workdir / f"{name}{log_suffix}.log", env=env,
        )  # fmt: skip
        process.port, process.metrics_port = port, metrics_port
        return process

    def wait_ready(self, process: controlplane.Process) -> None:
        controlplane.wait_ready(
            partial(self.is_ready, process.port),
            process=process,
            timeout_s=SERVER_READY_S,
            what=f"{process.name} on port {process.port}",
        )


def start(env: cluster.E2ECluster, workdir: Path, *, host: str | None = None) -> Servers:
    """Start the servers (and kube-scheduler if present) and point the cluster at them.

    Registers `Servers.procs.stop_all` in `env.cleanup` before the first start, so a failure
    half-way still stops what was started.
    """
    host = host or os.environ.get("ACCEL_E2E_HOST_ADDRESS", "172.18.0.1")
    certs = workdir / "certs"
    subprocess.run([_accel(), "certs", "create", "--out-dir", str(certs), "--namespace", cluster.NS,
                    *(arg for svc in SERVICES for arg in ("--service", svc)),
                    "--ip", host, "--local"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    kubeconfig = env.kubectl.kubeconfig or os.environ.get("KUBECONFIG", "")
    servers = Servers(
        workdir=workdir, host=host, certs=certs, kubeconfig=kubeconfig, procs=controlplane.processes()
    )
    env.servers = servers
    env.cleanup.append(_stopper(servers))
    env.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cluster.NS}})
    cluster.apply_policy(env.kubectl, cluster.e2e_policy())
    for name in SERVERS:  # all three load and watch at once; then wait for each
        servers.running[name] = servers.launch(name)
        servers.ports[name] = servers.running[name].port
        servers.metrics_ports[name] = servers.running[name].metrics_port
    for process in servers.running.values():
        servers.wait_ready(process)
    servers.match_conditions_stripped = env.server_minor < MATCH_CONDITIONS_SINCE
    apply_webhook_configs(env, servers, url_base=f"https://{host}:{servers.ports['webhook']}")
    binary = _scheduler_binary(env)
    if binary:
        servers.scheduler = _start_scheduler(env, servers, binary)
        env.scheduler_running = True
    return servers


def _stopper(servers: Servers) -> Any:
    def stop() -> None:
        if servers.scheduler is not None:
            # Without leader election kube-scheduler ignores SIGTERM: kill it at once.
            servers.procs.stop(servers.scheduler, grace_s=0)
        for process in [*servers.extra, *servers.running.values()]:
            servers.procs.stop(process)

    return stop


def webhook_configs(
    env: cluster.E2ECluster, url_base: str, ca_pem: bytes, *, strip_match_conditions: bool
) -> list[cluster.Obj]:
    """The shipped webhook configurations, pointed at `url_base` by URL with the CA bundle."""
    ca_bundle = base64.b64encode(ca_pem).decode()
    configs = []
    for obj in cluster.render_manifests(env.kubectl):
        if obj["kind"] not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        for webhook in obj["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url_base}{path}", "caBundle": ca_bundle}
            if strip_match_conditions:
                # Kubernetes < 1.28 has no matchConditions (a strict server would refuse them;
                # an old one drops them silently). Say so here instead of relying on either.
                webhook.pop("matchConditions", None)
        configs.append(obj)
    return configs


def apply_webhook_configs(
    env: cluster.E2ECluster, servers: Servers, *, url_base: str, cleanup: bool = True
) -> None:
    """Register (or re-point) the webhooks at `url_base`; `cleanup` deletes them at the end of the run."""
    for obj in webhook_configs(env, url_base, servers.ca.read_bytes(),
                               strip_match_conditions=servers.match_conditions_stripped):  # fmt: skip
        env.kubectl.apply(obj)
        if cleanup:
            env.cleanup.append(
                partial(cluster.delete_quietly, env.kubectl, obj["kind"], obj["metadata"]["name"])
            )


def _scheduler_binary(env: cluster.E2ECluster) -> str | None:
    if env.control_plane is not None:
        return env.control_plane.binary("kube-scheduler")
    return shutil.which("kube-scheduler")


def scheduler_config(env: cluster.E2ECluster, servers: Servers) -> dict[str, Any]:
    """The shipped KubeSchedulerConfiguration, run on this host against this run's extender."""
    config_map = next(
        o
        for o in cluster.render_manifests(env.kubectl)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "accel-scheduler-config"
    )
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    if env.server_minor < SCHEDULER_CONFIG_V1_SINCE:
        # v1 came in 1.25; v1beta3 has the same extender fields, so only the version changes.
        config["apiVersion"] = "kubescheduler.config.k8s.io/v1beta3"
    # One scheduler on this host: no leader election (a lease would only slow start-up).
    config["leaderElection"] = {"leaderElect": False}
    config["clientConnection"] = {"kubeconfig": servers.kubeconfig}
    extender = config["extenders"][0]
    extender["urlPrefix"] = f"https://127.0.0.1:{servers.ports['extender']}/"
    # Keep the shipped serverName: the certificate covers the Service names, as in the cluster.
    extender["tlsConfig"] = extender.get("tlsConfig", {}) | {"caFile": str(servers.ca)}
    client = _scheduler_client_cert(servers)
    extender["tlsConfig"] |= {"certFile": str(client / "tls.crt"), "keyFile": str(client / "tls.key")}
    return config


def peer_args(servers: Servers) -> tuple[str, ...]:
    """`accel serve webhook` options for a replica that joins the quota ledger leader election
    (webhook/peer.py): a peer listener on a free port of its own (the serving port may be shared
    with --reuse-port), advertised at this host, and the client certificate CN accel-webhook."""
    out = servers.workdir / "webhook-peer-client"
    if not (out / "tls.crt").is_file():
        subprocess.run(
            [_accel(), "certs", "client", "--cert-dir", str(servers.certs), "--name", "accel-webhook",
             "--out-dir", str(out)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    address = "127.0.0.1" if servers.host == "127.0.0.1" else servers.host
    return ("--peer-port", "0", "--peer-address", address, "--peer-cert-dir", str(out))


def _scheduler_client_cert(servers: Servers) -> Path:
    """kube-scheduler's client certificate: the extender answers only CN accel-scheduler (mTLS)."""
    out = servers.workdir / "scheduler-client"
    if not (out / "tls.crt").is_file():
        subprocess.run(
            [
                _accel(),
                "certs",
                "client",
                "--cert-dir",
                str(servers.certs),
                "--name",
                "accel-scheduler",
                "--out-dir",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return out


def _start_scheduler(env: cluster.E2ECluster, servers: Servers, binary: str) -> controlplane.Process:
    path = servers.workdir / "scheduler.yaml"
    path.write_text(yaml.safe_dump(scheduler_config(env, servers)))
    health = controlplane.free_port()
    process = servers.procs.start(
        "kube-scheduler",
        [binary, f"--config={path}", f"--secure-port={health}", "--bind-address=127.0.0.1", "--v=2"],
        servers.workdir / "scheduler.log",
    )
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # the scheduler's self-signed health endpoint, loopback only
    controlplane.wait_ready(partial(controlplane.https_ok, f"https://127.0.0.1:{health}/healthz", insecure),
                            process=process, timeout_s=SERVER_READY_S, what="kube-scheduler")  # fmt: skip
    return process
