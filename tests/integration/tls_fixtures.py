"""Helpers for the TLS integration tests: test CA, cert dirs, client contexts, a served app."""

from __future__ import annotations

import ssl
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from certs.issue import KeyPair, create_ca, create_serving_cert, serving_sans
from certs.state import CertState, write_cert_dir

NOW = datetime.now(UTC)  # certificates must be valid for the real TLS stack, so real time here
SANS = serving_sans(["accel-webhook"], "accel-system", extra_dns=["localhost"], ips=["127.0.0.1", "::1"])


def make_cert_dir(directory: Path, ca: KeyPair | None = None) -> CertState:
    """Write a CA bundle and a fresh serving pair into `directory`; returns the state."""
    ca = ca or create_ca(now=NOW)
    state = CertState(ca=ca, bundle=ca.cert_pem, serving=create_serving_cert(ca, sans=SANS, now=NOW))
    write_cert_dir(directory, state)
    return state


def reissue(directory: Path, state: CertState) -> CertState:
    """A new serving pair from the same CA, written atomically (key first, then certificate)."""
    assert state.ca is not None
    new = replace(state, serving=create_serving_cert(state.ca, sans=SANS, now=NOW))
    write_cert_dir(directory, new)
    return new


def client_context(ca_pem: bytes, *, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting `ca_pem`; pinned to one protocol version when given."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the *client* offer old versions; the server must refuse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
            ctx.minimum_version = version
            ctx.maximum_version = version
    return ctx
