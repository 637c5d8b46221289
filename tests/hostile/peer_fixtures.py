"""Certificates and TLS clients for the network-peer hostile tests (real TLS on 127.0.0.1)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from certs.issue import KeyPair, create_ca, create_client_cert, create_serving_cert
from certs.state import CertState, write_atomic, write_cert_dir
from tests.integration.tls_fixtures import NOW, SANS

SCHEDULER = "accel-scheduler"
PROXY = "accel-api-proxy"


@dataclass(frozen=True)
class Pki:
    """A server cert dir (`dir`: tls.crt, tls.key, ca.crt) and client pairs keyed by purpose."""

    dir: Path
    ca: KeyPair
    clients: dict[str, KeyPair]

    def context(self, client: str | None = None) -> ssl.SSLContext:
        """A client context trusting the server's CA, presenting `clients[client]` when given."""
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        if client is not None:
            pair = self.clients[client]
            cert, key = self.dir / f"client-{client}.crt", self.dir / f"client-{client}.key"
            write_atomic(key, pair.key_pem, mode=0o600)
            write_atomic(cert, pair.cert_pem)
            ctx.load_cert_chain(cert, key)
        return ctx


def make_pki(directory: Path) -> Pki:
    """One CA; the server's pair; client certs for the scheduler and the proxy; and hostile ones:
    `stranger` (valid CN from a foreign CA), `serving` (the server's own serverAuth-only pair),
    `other` (a clientAuth cert from the right CA for someone else)."""
    ca = create_ca(now=NOW)
    serving = create_serving_cert(ca, sans=SANS, now=NOW)
    write_cert_dir(directory, CertState(ca=ca, bundle=ca.cert_pem, serving=serving))
    foreign = create_ca(now=NOW)
    clients = {
        "scheduler": create_client_cert(ca, common_name=SCHEDULER, now=NOW),
        "proxy": create_client_cert(ca, common_name=PROXY, now=NOW),
        "other": create_client_cert(ca, common_name="someone-else", now=NOW),
        "apiserver": create_client_cert(ca, common_name="kube-apiserver", now=NOW),
        "stranger-scheduler": create_client_cert(foreign, common_name=SCHEDULER, now=NOW),
        "stranger-proxy": create_client_cert(foreign, common_name=PROXY, now=NOW),
        "serving": serving,
    }
    return Pki(dir=directory, ca=ca, clients=clients)
