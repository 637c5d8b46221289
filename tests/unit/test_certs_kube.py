"""`ensure_certificates` against the in-memory stores (kube/certificates.py), and the CLI."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.issue import expiry, is_signed_by, load_certificates, serving_sans
from certs.rotation import CertificateRotator, RotationPolicy
from cli.main import main as accel
from kube.certificates import (
    MemorySecretStore,
    MemoryWebhookConfigStore,
    WebhookKind,
    ensure_certificates,
    inject_ca_bundle,
)
from kube.errors import ApiError, NotFound

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SANS = serving_sans(["accel-webhook", "accel-extender", "accel-api"], "accel-system")


def _config(kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{"name": f"{name}.accel.dev", "clientConfig": {"service": {"name": "accel-webhook"}}}],
    }


CONFIGS = [
    _config("MutatingWebhookConfiguration", "accel-mutate"),
    _config("ValidatingWebhookConfiguration", "accel-validate"),
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _ensure(secrets: MemorySecretStore, webhooks: MemoryWebhookConfigStore, clock: Clock) -> Any:
    rotator = CertificateRotator(sans=SANS, policy=RotationPolicy(), clock=clock)
    return await ensure_certificates(
        secrets=secrets,
        webhooks=webhooks,
        namespace="accel-system",
        secret_name="accel-webhook-tls",
        webhook_configs=["accel-mutate", "accel-validate"],
        rotator=rotator,
    )


def _data(secrets: MemorySecretStore, name: str, key: str) -> bytes:
    return base64.b64decode(secrets.objects[name]["data"][key])


async def test_ensure_creates_then_is_idempotent_then_rotates() -> None:
    secrets, webhooks, clock = MemorySecretStore(), MemoryWebhookConfigStore(CONFIGS), Clock()
    first = await _ensure(secrets, webhooks, clock)
    assert first.secrets_written == ["accel-webhook-tls-ca", "accel-webhook-tls"]
    assert first.configs_patched == ["mutating:accel-mutate", "validating:accel-validate"]
    tls = secrets.objects["accel-webhook-tls"]
    assert (
        tls["type"] == "kubernetes.io/tls" and "ca.key" not in tls["data"]
    )  # CA key never mounted by servers
    bundle = _data(secrets, "accel-webhook-tls", "ca.crt")
    for config in webhooks.objects.values():
        assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]) == bundle

    clock.now = T0 + timedelta(days=100)
    second = await _ensure(secrets, webhooks, clock)
    assert not second.changed and len(webhooks.patches) == 2

    old_cert = _data(secrets, "accel-webhook-tls", "tls.crt")
    clock.now = expiry(old_cert) - timedelta(days=10)
    third = await _ensure(secrets, webhooks, clock)
    assert third.secrets_written == ["accel-webhook-tls"] and third.configs_patched == []  # same CA
    new_cert = _data(secrets, "accel-webhook-tls", "tls.crt")
    assert new_cert != old_cert and is_signed_by(new_cert, _data(secrets, "accel-webhook-tls-ca", "ca.crt"))


async def test_ca_rollover_patches_bundle_before_serving_secret_changes() -> None:
    secrets, webhooks, clock = MemorySecretStore(), MemoryWebhookConfigStore(CONFIGS), Clock()
    await _ensure(secrets, webhooks, clock)
    ca_cert = _data(secrets, "accel-webhook-tls-ca", "ca.crt")
    clock.now = expiry(ca_cert) - timedelta(days=200)
    staged = await _ensure(secrets, webhooks, clock)
    assert staged.configs_patched  # new CA trusted everywhere...
    injected = base64.b64decode(
        webhooks.objects[("mutating", "accel-mutate")]["webhooks"][0]["clientConfig"]["caBundle"]
    )
    assert len(load_certificates(injected)) == 2
    clock.now += timedelta(days=2)
    promoted = await _ensure(secrets, webhooks, clock)
    assert "promote-next-ca" in promoted.decision.actions
    serving = _data(secrets, "accel-webhook-tls", "tls.crt")
    assert any(is_signed_by(serving, c) for c in [ca_cert, _data(secrets, "accel-webhook-tls-ca", "ca.crt")])
    assert not is_signed_by(serving, ca_cert)  # ...and only then does a new-CA certificate get served


class ForbiddenValidating(MemoryWebhookConfigStore):
    """RBAC grants get only on the kind a name really has: the other kind answers 403."""

    async def get(self, kind: WebhookKind, name: str) -> dict[str, Any]:
        if kind == "validating" and name == "accel-mutate":
            raise ApiError(403, "forbidden")
        return await super().get(kind, name)


async def test_inject_finds_kind_by_name_and_reports_missing(tmp_path: Path) -> None:
    store = ForbiddenValidating(CONFIGS)
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert await inject_ca_bundle(store, ["accel-mutate", "validating:accel-validate"], ca) == [
        "mutating:accel-mutate",
        "validating:accel-validate",
    ]
    assert await inject_ca_bundle(store, ["accel-mutate"], ca) == []
    with pytest.raises(NotFound, match="apply the manifests"):
        await inject_ca_bundle(store, ["accel-missing"], ca)


def test_cli_create_check_secret_inject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert (
        accel(
            [
                "certs",
                "create",
                "--out-dir",
                str(out),
                "--service",
                "accel-webhook",
                "--namespace",
                "accel-system",
                "--local",
                "--days",
                "20",
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} == {"ca.crt", "ca.key", "ca-signing.crt", "tls.crt", "tls.key"}
    ca_before = (out / "ca.crt").read_bytes()
    assert accel(["certs", "check", "--cert", str(out / "tls.crt")]) == 1  # 20 days < 30-day window
    assert accel(["certs", "check", "--cert", str(out / "tls.crt"), "--renew-before-days", "10"]) == 0
    assert accel(["certs", "create", "--out-dir", str(out), "--service", "accel-webhook", "--local"]) == 0
    assert (out / "ca.crt").read_bytes() == ca_before  # CA reused
    capsys.readouterr()

    assert accel(["certs", "secret", "--cert-dir", str(out)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["metadata"]["name"], d["type"]) for d in docs] == [
        ("accel-webhook-tls", "kubernetes.io/tls"),
        ("accel-webhook-tls-ca", "Opaque"),
    ]

    manifest = tmp_path / "hooks.yaml"
    manifest.write_text(yaml.safe_dump_all([*CONFIGS, {"kind": "ConfigMap", "metadata": {"name": "x"}}]))
    assert accel(["certs", "inject-ca", "--ca", str(out / "ca.crt"), "-f", str(manifest)]) == 0
    patched = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [base64.b64decode(d["webhooks"][0]["clientConfig"]["caBundle"]) for d in patched[:2]] == [
        ca_before
    ] * 2
    assert patched[2] == {"kind": "ConfigMap", "metadata": {"name": "x"}}


@pytest.mark.parametrize(
    "argv",
    [
        ["certs", "check", "--cert", "/nonexistent/tls.crt"],
        ["certs", "inject-ca", "--ca", "/nonexistent/ca.crt", "-f", "x.yaml"],
        ["certs", "create", "--out-dir", "/tmp/x", "--service", "s", "--ip", "not-an-ip"],
    ],
    ids=["missing-cert", "missing-ca", "bad-ip"],
)
def test_cli_bad_input_is_exit_2_with_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert accel(argv) == 2
    assert "accel certs: error:" in capsys.readouterr().err
