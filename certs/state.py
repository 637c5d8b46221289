"""The certificate material accel keeps, and its two storage forms: a directory and Secrets.

`CertState` is everything rotation needs: the signing CA, an optional *next* CA that is already
trusted but not yet signing (CA rollover, see rotation.py), the trust bundle clients get (`ca.crt`:
PEM of every CA still trusted) and the serving pair.

Storage (contract):
- directory: `ca.crt` (trust bundle), `ca.key` + `ca-signing.crt` (signing CA, only when known),
  `tls.crt`, `tls.key`. Keys are 0600. Every file is written atomically (temp file in the same
  directory, fsync, rename) so a reloading server never reads half a file.
- Kubernetes: a `kubernetes.io/tls` Secret `<name>` with `tls.crt`, `tls.key`, `ca.crt` (mounted by
  the servers), and an Opaque Secret `<name>-ca` with `ca.crt`, `ca.key` and, during a rollover,
  `next-ca.crt`, `next-ca.key` (mounted by nobody: the CA key never reaches a serving pod).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certs.issue import KeyPair

CA_BUNDLE_FILE = "ca.crt"
CA_CERT_FILE = "ca-signing.crt"
CA_KEY_FILE = "ca.key"
TLS_CERT_FILE = "tls.crt"
TLS_KEY_FILE = "tls.key"
SECRET_TYPE_TLS = "kubernetes.io/tls"
MANAGED_LABELS: dict[str, str] = {
    "app.kubernetes.io/name": "accel",
    "app.kubernetes.io/component": "certificates",
    "app.kubernetes.io/managed-by": "accel-certs",
}


@dataclass(frozen=True)
class CertState:
    """CA, next CA, trust bundle and serving pair; any part may be missing (not created yet)."""

    ca: KeyPair | None = None
    next_ca: KeyPair | None = None
    bundle: bytes = b""
    serving: KeyPair | None = None


def ca_secret_name(serving_secret: str) -> str:
    """Name of the Secret that holds the CA key for serving Secret `serving_secret`."""
    return f"{serving_secret}-ca"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one rename, so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_cert_dir(directory: Path, state: CertState) -> list[Path]:
    """Write every known part of `state` into `directory`; returns the paths written.

    The key is written before its certificate: a reloader that looks between the two renames sees a
    mismatched pair, rejects it and keeps serving the old one until the certificate lands.
    """
    files: list[tuple[str, bytes, int]] = []
    if state.ca is not None:
        files += [(CA_KEY_FILE, state.ca.key_pem, 0o600), (CA_CERT_FILE, state.ca.cert_pem, 0o644)]
    if state.bundle:
        files.append((CA_BUNDLE_FILE, state.bundle, 0o644))
    if state.serving is not None:
        files += [
            (TLS_KEY_FILE, state.serving.key_pem, 0o600),
            (TLS_CERT_FILE, state.serving.cert_pem, 0o644),
        ]
    written = []
    for name, data, mode in files:
        write_atomic(directory / name, data, mode=mode)
        written.append(directory / name)
    return written


def read_cert_dir(directory: Path) -> CertState:
    """Read what `write_cert_dir` wrote; missing files give missing parts, not errors."""

    def read(name: str) -> bytes | None:
        path = directory / name
        return path.read_bytes() if path.is_file() else None

    return CertState(
        ca=_pair(read(CA_CERT_FILE), read(CA_KEY_FILE)),
        bundle=read(CA_BUNDLE_FILE) or b"",
        serving=_pair(read(TLS_CERT_FILE), read(TLS_KEY_FILE)),
    )


def _pair(cert: bytes | None, key: bytes | None) -> KeyPair | None:
    return KeyPair(cert_pem=cert, key_pem=key) if cert and key else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}


def serving_secret_manifest(state: CertState, *, name: str, namespace: str) -> dict[str, Any]:
    """The `kubernetes.io/tls` Secret the servers mount: tls.crt, tls.key and the ca.crt bundle."""
    if state.serving is None or not state.bundle:
        raise ValueError("cannot render the serving Secret: no serving certificate or CA bundle yet")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace),
        "type": SECRET_TYPE_TLS,
        "data": {
            TLS_CERT_FILE: _b64(state.serving.cert_pem),
            TLS_KEY_FILE: _b64(state.serving.key_pem),
            CA_BUNDLE_FILE: _b64(state.bundle),
        },
    }


def ca_secret_manifest(state: CertState, *, name: str, namespace: str) -> dict[str, Any]:
    """The Opaque Secret holding the signing CA (and the next CA during a rollover)."""
    if state.ca is None:
        raise ValueError("cannot render the CA Secret: no CA yet")
    data = {"ca.crt": _b64(state.ca.cert_pem), "ca.key": _b64(state.ca.key_pem)}
    if state.next_ca is not None:
        data |= {"next-ca.crt": _b64(state.next_ca.cert_pem), "next-ca.key": _b64(state.next_ca.key_pem)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace),
        "type": "Opaque",
        "data": data,
    }


def _secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """Decode `.data` of a Secret dict; a bad base64 value is dropped (it will be re-issued)."""
    if not secret:
        return {}
    out: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            continue
    return out


def state_from_secrets(
    serving_secret: Mapping[str, Any] | None, ca_secret: Mapping[str, Any] | None
) -> CertState:
    """Rebuild a CertState from the two Secret dicts (either may be None when absent)."""
    serving, ca = _secret_data(serving_secret), _secret_data(ca_secret)
    return CertState(
        ca=_pair(ca.get("ca.crt"), ca.get("ca.key")),
        next_ca=_pair(ca.get("next-ca.crt"), ca.get("next-ca.key")),
        bundle=serving.get(CA_BUNDLE_FILE, b""),
        serving=_pair(serving.get(TLS_CERT_FILE), serving.get(TLS_KEY_FILE)),
    )
