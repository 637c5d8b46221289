"""The real `accel serve extender` process authenticates kube-scheduler by default, with the
client certificate that `accel certs client` makes (what the Deployment and the cert Job run)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.integration.test_security_serve import free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]
ACCEL = [sys.executable, "-m", "cli.main"]
SOURCE = ["--snapshot", "examples/cluster.yaml", "--policy", "examples/policy", "--host", "127.0.0.1"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def accel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ACCEL, *args], cwd=REPO, capture_output=True, text=True, env=ENV, timeout=120)


def test_extender_without_tls_refuses_to_start_unless_told_unauthenticated() -> None:
    out = accel("serve", "extender", *SOURCE, "--port", str(free_port()), "--insecure-plaintext")
    assert out.returncode == 1
    assert (
        "authenticates kube-scheduler by client certificate" in out.stderr
        and "--allow-unauthenticated" in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_api_client_ca_without_tls_is_refused() -> None:
    """A proxy CA given to a plaintext API would silently verify nothing: refused instead."""
    out = accel(
        "serve", "api", *SOURCE, "--port", str(free_port()), "--insecure-plaintext", "--client-ca", "x.crt"
    )
    assert (
        out.returncode == 1 and "--client-ca needs --cert-dir" in out.stderr and "Traceback" not in out.stderr
    )


def test_certs_client_needs_a_ca(tmp_path: Path) -> None:
    out = accel("certs", "client", "--cert-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "s"))
    assert out.returncode == 2 and "no CA" in out.stderr and "accel certs create" in out.stderr


async def test_served_extender_refuses_anonymous_bind_and_serves_the_scheduler(tmp_path: Path) -> None:
    certs, sched = tmp_path / "certs", tmp_path / "scheduler"
    made = accel("certs", "create", "--out-dir", str(certs), "--service", "accel-extender", "--local")
    assert made.returncode == 0, made.stderr
    made = accel(
        "certs", "client", "--cert-dir", str(certs), "--name", "accel-scheduler", "--out-dir", str(sched)
    )
    assert made.returncode == 0, made.stderr
    assert {p.name for p in sched.iterdir()} >= {"tls.crt", "tls.key", "ca.crt"}
    anonymous = ssl.create_default_context(cafile=str(sched / "ca.crt"))
    scheduler = ssl.create_default_context(cafile=str(sched / "ca.crt"))
    scheduler.load_cert_chain(sched / "tls.crt", sched / "tls.key")
    port = free_port()
    proc = subprocess.Popen(
        [*ACCEL, "serve", "extender", *SOURCE, "--port", str(port), "--cert-dir", str(certs)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    bind = {"PodName": "nobody", "PodNamespace": "default", "PodUID": "u", "Node": "gpu-h100-01"}
    try:
        base = f"https://localhost:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, anonymous, proc)
            async with session.post(f"{base}/bind", json=bind, ssl=anonymous) as resp:
                assert resp.status == 401
                assert "client certificate required" in (await resp.json())["error"]
            async with session.post(f"{base}/bind", json=bind, ssl=scheduler) as resp:
                assert resp.status == 200  # authenticated: the extender decides (this pod does not exist)
                assert "nobody" in (await resp.json())["Error"]
    finally:
        proc.kill()
        proc.wait()
