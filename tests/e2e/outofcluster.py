"""ACCEL_E2E_OUT_OF_CLUSTER=1: run webhook, extender and api on this host against the cluster.

What is possible this way:
1. The webhooks: the configurations are applied with `clientConfig.url` pointing at
   `https://$ACCEL_E2E_HOST_ADDRESS:<port>/...` and the caBundle of a CA from `accel certs create`.
   The API server must be able to reach that address (for kind: the Docker bridge gateway,
   usually 172.18.0.1; for a remote cluster: a routable address of this host).
2. The scheduler only if `kube-scheduler` is on PATH: it runs on this host too, with the
   extender at https://127.0.0.1:<port>/. Otherwise scheduling tests skip.
3. No replica can be killed (one process per server), so the resilience test skips.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from functools import partial
from pathlib import Path

import yaml

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until

SERVERS = ("webhook", "extender", "api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accel() -> str:
    return str(Path(sys.executable).with_name("accel"))


def start(env: cluster.E2ECluster, workdir: Path) -> None:
    """Start the servers (and kube-scheduler if present) and point the cluster at them."""
    host = os.environ.get("ACCEL_E2E_HOST_ADDRESS", "172.18.0.1")
    certs = workdir / "certs"
    subprocess.run([_accel(), "certs", "create", "--out-dir", str(certs), "--service", "accel-webhook",
                    "--namespace", cluster.NS, "--ip", host, "--ip", "127.0.0.1", "--dns", "localhost"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    # kube-scheduler's client certificate: the extender answers only CN accel-scheduler (issue 21).
    subprocess.run([_accel(), "certs", "client", "--cert-dir", str(certs), "--name", "accel-scheduler",
                    "--out-dir", str(workdir / "scheduler-client")], check=True, capture_output=True, timeout=60)  # fmt: skip
    kubeconfig = env.kubectl.kubeconfig or os.environ.get("KUBECONFIG", "")
    proc_env = os.environ | {"KUBECONFIG": kubeconfig, "ACCEL_NAMESPACE": cluster.NS}
    env.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cluster.NS}})
    cluster.apply_policy(env.kubectl, cluster.e2e_policy())
    ports = {name: _free_port() for name in SERVERS}
    for name, port in ports.items():
        log = (workdir / f"{name}.log").open("w")
        proc = subprocess.Popen([_accel(), "serve", name, "--port", str(port), "--cert-dir", str(certs)],
                                env=proc_env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        env.cleanup.append(lambda p=proc: _stop(p))
        wait_until(partial(_ready, port, certs / "ca.crt"), timeout_s=60, what=f"accel serve {name} ready")
    _apply_webhook_configs(env, host, ports["webhook"], (certs / "ca.crt").read_bytes())
    env.scheduler_running = _start_scheduler(env, workdir, ports["extender"], workdir / "scheduler-client", kubeconfig)


def _ready(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=2) as response:
        return bool(response.status == 200)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _apply_webhook_configs(env: cluster.E2ECluster, host: str, port: int, ca_pem: bytes) -> None:
    ca_bundle = base64.b64encode(ca_pem).decode()
    for obj in cluster.render_manifests(env.kubectl):
        if obj["kind"] not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        for webhook in obj["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"https://{host}:{port}{path}", "caBundle": ca_bundle}
        env.kubectl.apply(obj)
        env.cleanup.append(
            lambda o=obj: cluster.delete_quietly(env.kubectl, o["kind"], o["metadata"]["name"])
        )


def _start_scheduler(
    env: cluster.E2ECluster, workdir: Path, extender_port: int, client_dir: Path, kubeconfig: str
) -> bool:
    binary = shutil.which("kube-scheduler")
    if binary is None:
        return False
    config_map = next(
        o for o in cluster.render_manifests(env.kubectl) if o["metadata"]["name"] == "accel-scheduler-config"
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    config["leaderElection"] = {"leaderElect": False}
    config["clientConnection"] = {"kubeconfig": kubeconfig}
    extender = config["extenders"][0]
    extender["urlPrefix"] = f"https://127.0.0.1:{extender_port}/"
    extender["tlsConfig"] = {
        "caFile": str(client_dir / "ca.crt"), "certFile": str(client_dir / "tls.crt"), "keyFile": str(client_dir / "tls.key"),
    }
    path = workdir / "scheduler.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (workdir / "scheduler.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config={path}", "--secure-port=0"], stdout=log, stderr=subprocess.STDOUT
    )
    env.cleanup.append(lambda: _stop(proc))
    return True
