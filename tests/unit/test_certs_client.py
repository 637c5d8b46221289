"""Client certificates (issue 21): kube-scheduler's certificate for the extender, issued and kept
current by `accel certs ensure --client SECRET=CN` (certs/rotation.py rule 6)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.issue import (
    common_name,
    create_ca,
    create_client_cert,
    is_signed_by,
    load_certificate,
    serving_sans,
)
from certs.rotation import CertificateRotator, ClientSecret, RotationPolicy
from cli.certs_cmd import parse_client_spec
from kube.certificates import MemorySecretStore, MemoryWebhookConfigStore, ensure_certificates

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SANS = serving_sans(["accel-extender"], "accel-system")
CLIENT = ClientSecret(secret="accel-scheduler-client", common_name="accel-scheduler")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_client_certificate_is_client_auth_only_with_the_cn() -> None:
    ca = create_ca(now=T0)
    pair = create_client_cert(ca, common_name="accel-scheduler", now=T0)
    cert = load_certificate(pair.cert_pem)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert common_name(pair.cert_pem) == "accel-scheduler" and is_signed_by(pair.cert_pem, ca.cert_pem)


def test_client_spec_parsing() -> None:
    assert parse_client_spec("accel-scheduler-client=accel-scheduler") == CLIENT
    for bad in ("accel-scheduler-client", "=x", "x="):
        try:
            parse_client_spec(bad)
        except ValueError as exc:
            assert "SECRET=CN" in str(exc)
        else:
            raise AssertionError(bad)


async def _ensure(secrets: MemorySecretStore, clock: Clock, client: ClientSecret = CLIENT) -> list[str]:
    result = await ensure_certificates(
        secrets=secrets, webhooks=MemoryWebhookConfigStore(), namespace="accel-system",
        secret_name="accel-webhook-tls", webhook_configs=[],
        rotator=CertificateRotator(sans=SANS, policy=RotationPolicy(), clock=clock), clients=[client],
    )
    return result.secrets_written


def _pem(secrets: MemorySecretStore, key: str) -> bytes:
    return base64.b64decode(secrets.objects[CLIENT.secret]["data"][key])


async def test_ensure_creates_the_client_secret_then_leaves_it_until_due() -> None:
    secrets, clock = MemorySecretStore(), Clock()
    assert CLIENT.secret in await _ensure(secrets, clock)
    secret = secrets.objects[CLIENT.secret]
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    ca_pem = base64.b64decode(secrets.objects["accel-webhook-tls-ca"]["data"]["ca.crt"])
    serving_bundle = base64.b64decode(secrets.objects["accel-webhook-tls"]["data"]["ca.crt"])
    assert is_signed_by(_pem(secrets, "tls.crt"), ca_pem) and _pem(secrets, "ca.crt") == serving_bundle
    assert common_name(_pem(secrets, "tls.crt")) == "accel-scheduler"
    first = _pem(secrets, "tls.crt")
    assert await _ensure(secrets, clock) == []  # idempotent
    clock.now = T0 + timedelta(days=340)  # inside the 30-day renew window of a 1-year certificate
    written = await _ensure(secrets, clock)
    assert CLIENT.secret in written and _pem(secrets, "tls.crt") != first


async def test_ensure_reissues_for_another_cn() -> None:
    secrets, clock = MemorySecretStore(), Clock()
    await _ensure(secrets, clock)
    renamed = ClientSecret(secret=CLIENT.secret, common_name="accel-scheduler-b")
    assert await _ensure(secrets, clock, renamed) == [CLIENT.secret]
    assert common_name(_pem(secrets, "tls.crt")) == "accel-scheduler-b"
