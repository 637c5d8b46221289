"""A server TLS context that picks up a rotated certificate without a restart.

`ReloadingTLS(cert_dir)` owns one `ssl.SSLContext(PROTOCOL_TLS_SERVER)` (TLS 1.2 minimum) loaded
from `cert_dir/tls.crt` + `cert_dir/tls.key`. A poll task (started and stopped by `cleanup_ctx`)
compares each file's (mtime, size, inode) every `poll_interval` seconds; Kubernetes Secret volumes
swap a symlink, which changes the inode. On a change it re-reads both files and calls
`load_cert_chain` again on the *same* context: handshakes after that get the new certificate,
established connections keep theirs.

Invariants:
1. A half-written file, a key that does not match its certificate, or a missing file is logged as an
   error and ignored; the previous certificate keeps serving. The same bad pair is not retried until
   a file changes again.
2. The pair handed to OpenSSL is exactly the bytes that were validated (copied to a private temp
   file), so a write racing the reload cannot slip an unchecked file in.
3. `on_expiry(not_after_unix)` is called after every successful load (feeds the expiry metric).
4. With `client_ca` the context asks every client for a certificate but does not require one
   (`CERT_OPTIONAL`: probes and scrapers connect without); a certificate that is sent must chain to
   `client_ca` and carry the clientAuth purpose, else the handshake fails. Which routes need one is
   decided per request (serving/peers.py). A changed CA file is loaded too; OpenSSL only adds
   trust anchors, so a CA dropped from the file stays trusted until the process restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path

from aiohttp import web

from certs.issue import CertificateError, KeyPair, verify_pair

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[int, int, int], ...]


def files_fingerprint(paths: Iterable[Path]) -> Fingerprint | None:
    """(mtime, size, inode) of each file, None when one cannot be read: a Secret volume update
    changes them (it swaps a symlink: a new inode), so a changed value means "read them again"."""
    try:
        stats = [os.stat(p) for p in paths]
    except OSError:
        return None
    return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


class ReloadingTLS:
    """Server-side SSLContext that follows `tls.crt`/`tls.key` in `cert_dir`."""

    def __init__(
        self,
        cert_dir: Path | str,
        *,
        poll_interval: float = 5.0,
        cert_name: str = "tls.crt",
        key_name: str = "tls.key",
        on_expiry: Callable[[float], None] | None = None,
        client_ca: Path | str | None = None,
    ) -> None:
        self.cert_path = Path(cert_dir) / cert_name
        self.key_path = Path(cert_dir) / key_name
        self.poll_interval = poll_interval
        self.on_expiry = on_expiry
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.not_after: datetime | None = None
        self.reloads = 0
        self._seen: Fingerprint | None = None
        self.client_ca = Path(client_ca) if client_ca is not None else None
        self._ca_seen: Fingerprint | None = None
        if self.client_ca is not None:
            self.context.verify_mode = ssl.CERT_OPTIONAL
            if not self._reload_client_ca():
                raise CertificateError(
                    f"cannot verify client certificates: no readable CA bundle at {self.client_ca} "
                    "(the ca.crt written by `accel certs create`)"
                )
        if not self.check_and_reload():
            raise CertificateError(
                f"cannot serve TLS: no valid certificate pair at {self.cert_path} and {self.key_path} "
                "(create one with `accel certs create --out-dir DIR ...`)"
            )

    def _fingerprint(self) -> Fingerprint | None:
        return files_fingerprint((self.cert_path, self.key_path))

    def _reload_client_ca(self) -> bool:
        """Load the client CA bundle when it changed (invariant 4); True when it was loaded now."""
        assert self.client_ca is not None
        fingerprint = files_fingerprint((self.client_ca,))
        if fingerprint is None or fingerprint == self._ca_seen:
            return False
        self._ca_seen = fingerprint
        try:
            self.context.load_verify_locations(cafile=str(self.client_ca))
        except (OSError, ssl.SSLError) as exc:
            log.error(
                "client CA rejected; keeping the trusted ones: %s", exc, extra={"ca": str(self.client_ca)}
            )
            return False
        log.info("client CA loaded", extra={"ca": str(self.client_ca)})
        return True

    def check_and_reload(self) -> bool:
        """Reload when the files changed since the last look; True when a new pair was loaded."""
        if self.client_ca is not None:
            self._reload_client_ca()
        fingerprint = self._fingerprint()
        if fingerprint is None or fingerprint == self._seen:
            if fingerprint is None and self._seen is not None:
                log.error(
                    "TLS files missing; keeping the loaded certificate", extra={"cert": str(self.cert_path)}
                )
                self._seen = None
            return False
        self._seen = fingerprint
        try:
            pair = KeyPair(cert_pem=self.cert_path.read_bytes(), key_pem=self.key_path.read_bytes())
            cert = verify_pair(pair)
            self._load(pair)
        except (OSError, CertificateError, ssl.SSLError) as exc:
            log.error(
                "TLS reload rejected; keeping the loaded certificate: %s",
                exc,
                extra={"cert": str(self.cert_path)},
            )
            return False
        self.not_after = cert.not_valid_after_utc
        self.reloads += 1
        log.info(
            "TLS certificate loaded",
            extra={"not_after": self.not_after.isoformat(), "cert": str(self.cert_path)},
        )
        if self.on_expiry is not None:
            self.on_expiry(self.not_after.timestamp())
        return True

    def _load(self, pair: KeyPair) -> None:
        """Hand exactly the validated bytes to OpenSSL via a 0600 temp file (invariant 2)."""
        with tempfile.TemporaryDirectory(prefix="accel-tls-") as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(pair.cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pair.key_pem)
            self.context.load_cert_chain(cert_file, key_file)

    def not_after_timestamp(self) -> float:
        """Not-after of the certificate in use, unix seconds (for a gauge callback)."""
        return self.not_after.timestamp() if self.not_after is not None else 0.0

    async def watch(self) -> None:
        """Poll forever; cancel to stop."""
        while True:
            await asyncio.sleep(self.poll_interval)
            self.check_and_reload()

    async def cleanup_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: run `watch` for the app's lifetime."""
        task = asyncio.create_task(self.watch(), name=f"tls-reload:{self.cert_path}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
