"""A real Kubernetes control plane on loopback for the e2e tests (the "local" mode).

Binaries come from (first found):
1. `KUBEBUILDER_ASSETS` (the envtest convention): a folder with `etcd` and `kube-apiserver`, and
   optionally `kube-controller-manager`, `kube-scheduler` and `kubectl`;
2. the kube-local bundle (`ACCEL_KUBE_LOCAL`, default `../shared/tools/kube-local` beside the
   repository): its `kube-local.tar.xz` is unpacked once into `KUBE_LOCAL_CACHE`
   (default `~/.cache/kube-local`), exactly where kube-local's own `up` script puts it.

The processes are started here rather than by kube-local's `up` so that this module knows every
command line: the API server restart test stops and starts kube-apiserver on the same etcd and
port. Every process is a child of the test run, tracked by PID in `Processes`, stopped by PID in
reverse start order (also from an atexit hook and on SIGTERM), and killed by the kernel if the
test run itself dies (PR_SET_PDEATHSIG), so none outlives it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("etcd", "kube-apiserver")
OPTIONAL = ("kube-controller-manager", "kube-scheduler", "kubectl")
# Controllers that make sense without kubelets (as kube-local's `up`): node lifecycle would taint
# every node NotReady because no kubelet ever reports; the rest need clouds or volumes.
CONTROLLERS = (
    "*,-nodelifecycle,-nodeipam,-cloud-node-lifecycle,-service,-route,-attachdetach,"
    "-persistentvolume-binder,-persistentvolume-expander"
)
ADMISSION_PLUGINS = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,ResourceQuota,MutatingAdmissionWebhook,"
    "ValidatingAdmissionWebhook"
)
READY_TIMEOUT_S = 90.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be found or started; the message says what to fix."""


@dataclass(frozen=True)
class Assets:
    """Where the binaries are and where they came from (for the mode line)."""

    bin_dir: Path
    origin: str  # "KUBEBUILDER_ASSETS=..." | "kube-local bundle ..."

    def binary(self, name: str) -> Path | None:
        path = self.bin_dir / name
        return path if path.is_file() and os.access(path, os.X_OK) else None


def kube_local_dir() -> Path:
    return Path(os.environ.get("ACCEL_KUBE_LOCAL") or ROOT.parent / "shared" / "tools" / "kube-local")


def find_assets() -> tuple[Assets | None, str]:
    """(assets, "") when a local control plane can run, else (None, why not). Cheap: no unpacking."""
    envtest = os.environ.get("KUBEBUILDER_ASSETS")
    if envtest:
        folder = Path(envtest)
        missing = [name for name in REQUIRED if not (folder / name).is_file()]
        if missing:
            return None, f"KUBEBUILDER_ASSETS={folder} lacks {', '.join(missing)}"
        return Assets(folder, f"KUBEBUILDER_ASSETS={folder}"), ""
    bundle = kube_local_dir()
    if (bundle / "kube-local.tar.xz").is_file():
        cache = Path(os.environ.get("KUBE_LOCAL_CACHE") or Path.home() / ".cache" / "kube-local")
        return Assets(cache / "bin", f"kube-local bundle {bundle}"), ""
    return None, f"no KUBEBUILDER_ASSETS and no kube-local bundle at {bundle} (set ACCEL_KUBE_LOCAL)"


def unpack_kube_local(assets: Assets) -> None:
    """Unpack the bundle into the cache unless it is there and newer than the tarball.

    Other users of the same cache may unpack at the same time, so each binary is extracted into a
    private folder and moved into place with an atomic rename.
    """
    if assets.origin.startswith("KUBEBUILDER_ASSETS"):
        return
    tarball = kube_local_dir() / "kube-local.tar.xz"
    apiserver = assets.bin_dir / "kube-apiserver"
    if apiserver.is_file() and apiserver.stat().st_mtime >= tarball.stat().st_mtime:
        return
    assets.bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=assets.bin_dir.parent) as tmp, tarfile.open(tarball) as archive:
        archive.extractall(tmp, filter="data")
        for unpacked in Path(tmp).glob("*/bin/*"):
            unpacked.touch()
            os.replace(unpacked, assets.bin_dir / unpacked.name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ processes
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGKILL if the test run dies first."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    port: int = 0  # the port it serves on, where the caller chose one
    metrics_port: int = 0  # an accel server's metrics listener (`--metrics-port`), where it has one

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Processes:
    """Every process the e2e run starts; `stop_all` stops them by PID, newest first."""

    started: list[Process] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None
    ) -> Process:
        handle = log.open("ab")
        try:
            popen = subprocess.Popen(
                list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, preexec_fn=_die_with_parent,  # only prctl: safe after fork
            )  # fmt: skip
        finally:
            handle.close()
        process = Process(name, list(argv), log, popen)
        self.started.append(process)
        return process

    def stop(self, process: Process, *, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s` (kube-scheduler without leader election ignores TERM)."""
        if process.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.popen.wait(timeout=30)
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.started)):
            self.stop(process)


_ALL = Processes()


def _stop_everything_at_exit() -> None:
    _ALL.stop_all()


def _sigterm(signum: int, _frame: object) -> None:
    _ALL.stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_everything_at_exit)


def processes() -> Processes:
    """The one registry of this test run (so atexit and SIGTERM reach every process)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm)
    return _ALL


def wait_ready(check: object, *, process: Process, timeout_s: float, what: str) -> None:
    """Poll `check()` until True; fail at once with the log tail when `process` exits meanwhile."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if not process.running():
            raise ControlPlaneError(
                f"{what}: {process.name} exited with {process.popen.returncode}; log {process.log}:\n"
                f"{process.log_tail()}"
            )
        if time.monotonic() >= deadline:
            raise ControlPlaneError(
                f"{what}: not ready after {timeout_s}s; log {process.log}:\n{process.log_tail()}"
            )
        time.sleep(0.25)


def https_ok(url: str, context: ssl.SSLContext, timeout_s: float = 2.0) -> bool:
    """True on HTTP 200; False on any connection error or other status (the thing is not up yet)."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


# ------------------------------------------------------------------------------------ certificates
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())  # fmt: skip


def _cert(
    subject: x509.Name, key: rsa.RSAPrivateKey, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    *, ca: bool = False, sans: list[x509.GeneralName] | None = None, client: bool = False,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
    else:
        usage = x509.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def write_pki(pki: Path) -> None:
    """CA, API server serving cert, admin client cert (system:masters), service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("accel-e2e-ca")
    ca = _cert(ca_name, ca_key, None, ca=True)
    server_key = _key()
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")
    ]
    sans += [
        x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    ]
    server = _cert(_name("kube-apiserver"), server_key, (ca_name, ca_key), sans=sans)
    admin_key = _key()
    admin = _cert(_name("admin", "system:masters"), admin_key, (ca_name, ca_key), client=True)
    sa_key = _key()
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pem_key(ca_key),
        "apiserver.crt": server.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": _pem_key(server_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM),
        "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for name, data in files.items():
        (pki / name).write_bytes(data)
        (pki / name).chmod(0o600)


# ------------------------------------------------------------------------------------ the cluster
@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager when present) on 127.0.0.1."""

    assets: Assets
    workdir: Path
    procs: Processes
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    apiserver: Process | None = None
    controller_manager: Process | None = None

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def binary(self, name: str) -> str | None:
        found = self.assets.binary(name)
        return str(found) if found else shutil.which(name)

    def start(self) -> None:
        unpack_kube_local(self.assets)
        write_pki(self.pki)
        self._write_kubeconfig()
        etcd = self.procs.start("etcd", [
            str(self.assets.bin_dir / "etcd"), "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{self.etcd_peer_port}",
            "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
        ], self.workdir / "etcd.log")  # fmt: skip
        del etcd  # stopped through self.procs, like everything else
        self.start_apiserver()
        manager = self.binary("kube-controller-manager")
        if manager:
            self.controller_manager = self.procs.start(
                "kube-controller-manager",
                [
                    manager,
                    f"--kubeconfig={self.kubeconfig}",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--use-service-account-credentials=false",
                    f"--service-account-private-key-file={self.pki / 'sa.key'}",
                    f"--root-ca-file={self.pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                    f"--controllers={CONTROLLERS}",
                ],
                self.workdir / "controller-manager.log",
            )

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.assets.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        ]

    def start_apiserver(self) -> None:
        """Start kube-apiserver (again, after `stop_apiserver`) on the same etcd and port."""
        self.apiserver = self.procs.start(
            "kube-apiserver", self._apiserver_argv(), self.workdir / "apiserver.log"
        )
        wait_ready(
            self.apiserver_ready, process=self.apiserver, timeout_s=READY_TIMEOUT_S, what="kube-apiserver"
        )

    def stop_apiserver(self) -> None:
        if self.apiserver is not None:
            self.procs.stop(self.apiserver, grace_s=20)
            self.apiserver = None

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def request(
        self, method: str, path: str, body: object = None, *, timeout_s: float = 60
    ) -> tuple[int, Any]:
        """One HTTPS call as the admin (for bursts too fast for one kubectl process per call).
        Returns (status, decoded JSON body or text)."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.apiserver_port, context=self.client_context(), timeout=timeout_s
        )
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def apiserver_ready(self) -> bool:
        return https_ok(f"{self.server}/readyz", self.client_context())

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: accel-e2e, cluster: {{server: "{self.server}", '
            f'certificate-authority: "{pki / "ca.crt"}"}}}}]\n'
            f'users: [{{name: admin, user: {{client-certificate: "{pki / "admin.crt"}", '
            f'client-key: "{pki / "admin.key"}"}}}}]\n'
            "contexts: [{name: accel-e2e, context: {cluster: accel-e2e, user: admin}}]\n"
            "current-context: accel-e2e\n"
        )
