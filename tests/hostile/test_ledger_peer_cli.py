"""`accel serve webhook --peer-port ...` (the quota ledger leader's peer listener): every misuse of
the flags is one line saying what to fix, never a traceback, and a taken peer port is refused."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.peer_fixtures import make_pki
from tests.integration.test_ledger_peers import peer_cert_dir

REPO = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "cli.main", "serve", "--snapshot", "examples/cluster.yaml",
         "--policy", "examples/policy", "--host", "127.0.0.1"]  # fmt: skip


def serve(component: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*SERVE[:3], "serve", component, *SERVE[4:], *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("component", "extra", "message"),
    [
        ("webhook", ["--peer-cert-dir", "x"], "--peer-cert-dir need --peer-port"),
        ("extender", ["--peer-port", "0", "--allow-unauthenticated", "--insecure-plaintext"],
         "--peer-port applies to `accel serve webhook` only"),
        ("webhook", ["--port", "9443", "--peer-port", "9443"], "--peer-port 9443: give a free TCP port"),
        ("webhook", ["--peer-port", "0"], "--peer-port needs --cert-dir"),
    ],
)
def test_misused_peer_flags_are_refused_with_a_reason(component: str, extra: list[str], message: str) -> None:
    out = serve(component, *extra)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_peer_port_needs_this_replica_s_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "server")
    out = serve("webhook", "--cert-dir", str(pki.dir), "--peer-port", "0")
    assert out.returncode == 1 and "--peer-cert-dir" in out.stderr and "accel certs client" in out.stderr
    out = serve("webhook", "--cert-dir", str(pki.dir), "--peer-port", "0", "--peer-cert-dir", str(tmp_path))
    assert out.returncode == 1 and "missing tls.crt, tls.key, ca.crt" in out.stderr, out.stderr


def test_a_taken_peer_port_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "server")
    client = peer_cert_dir(pki, tmp_path / "client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        out = serve("webhook", "--port", "0", "--cert-dir", str(pki.dir), "--peer-port", str(busy),
                    "--peer-cert-dir", str(client))  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot listen for ledger peers on 127.0.0.1:{busy}" in out.stderr and "--peer-port" in out.stderr
