"""Certificates: issuing, inspecting, storing, injecting and rotating (certs/)."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonpatch
import pytest
from cryptography import x509

from certs.inject import InjectionError, ca_bundle_patch, with_ca_bundle, with_extender_ca
from certs.issue import (
    CertificateError,
    KeyPair,
    SubjectAltNames,
    create_ca,
    create_serving_cert,
    expiry,
    is_signed_by,
    load_certificate,
    load_certificates,
    needs_rotation,
    serving_sans,
    subject_alt_names,
    verify_pair,
)
from certs.rotation import Action, CertificateRotator, RotationPolicy, apply, decide
from certs.state import (
    CertState,
    ca_secret_manifest,
    read_cert_dir,
    serving_secret_manifest,
    state_from_secrets,
    write_cert_dir,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SANS = serving_sans(
    ["accel-webhook", "accel-extender"], "accel-system", extra_dns=["localhost"], ips=["127.0.0.1"]
)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return create_ca(now=T0)


@pytest.fixture(scope="module")
def serving(ca: KeyPair) -> KeyPair:
    return create_serving_cert(ca, sans=SANS, now=T0)


def test_ca_is_a_signing_ca(ca: KeyPair) -> None:
    cert = load_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert expiry(ca.cert_pem) == T0 + timedelta(days=3650)


def test_serving_cert_has_every_service_name_and_is_signed_by_ca(ca: KeyPair, serving: KeyPair) -> None:
    sans = subject_alt_names(serving.cert_pem)
    assert {
        "accel-webhook.accel-system.svc",
        "accel-extender.accel-system.svc.cluster.local",
        "accel-webhook",
        "accel-webhook.accel-system",
        "localhost",
    } <= sans.dns
    assert sans.ips == frozenset({"127.0.0.1"})
    assert is_signed_by(serving.cert_pem, ca.cert_pem)
    assert not is_signed_by(serving.cert_pem, create_ca(now=T0).cert_pem)
    cert = verify_pair(serving)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_rsa_option_and_validity_clamped_to_ca() -> None:
    short_ca = create_ca(now=T0, validity=timedelta(days=10), algorithm="rsa-2048")
    leaf = create_serving_cert(
        short_ca, sans=SANS, now=T0, validity=timedelta(days=365), algorithm="rsa-2048"
    )
    assert expiry(leaf.cert_pem) == expiry(short_ca.cert_pem)
    assert load_certificate(leaf.cert_pem).public_key().key_size == 2048  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(365, False), (31, False), (30, True), (1, True), (-1, True)],
    ids=["fresh", "just-outside-window", "at-window-edge", "one-day-left", "already-expired"],
)
def test_needs_rotation(serving: KeyPair, days_left: int, expected: bool) -> None:
    now = expiry(serving.cert_pem) - timedelta(days=days_left)
    assert needs_rotation(serving.cert_pem, now, before=timedelta(days=30)) is expected


@pytest.mark.parametrize(
    "blob",
    [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nMIIB\n"],
    ids=["empty", "not-pem", "truncated"],
)
def test_bad_pem_is_a_clear_error(blob: bytes) -> None:
    with pytest.raises(CertificateError):
        expiry(blob)


def test_mismatched_key_is_rejected(ca: KeyPair, serving: KeyPair) -> None:
    with pytest.raises(CertificateError, match="does not match"):
        verify_pair(KeyPair(cert_pem=serving.cert_pem, key_pem=ca.key_pem))


def test_bad_ip_is_a_clear_error() -> None:
    with pytest.raises(CertificateError, match="invalid IP"):
        SubjectAltNames.of(["a"], ["not-an-ip"])


def test_cert_dir_round_trip_with_private_keys(tmp_path: Path, ca: KeyPair, serving: KeyPair) -> None:
    state = CertState(ca=ca, bundle=ca.cert_pem, serving=serving)
    write_cert_dir(tmp_path, state)
    assert read_cert_dir(tmp_path) == state
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_secrets_round_trip(ca: KeyPair, serving: KeyPair) -> None:
    state = CertState(ca=ca, bundle=ca.cert_pem, serving=serving)
    tls = serving_secret_manifest(state, name="accel-webhook-tls", namespace="accel-system")
    assert tls["type"] == "kubernetes.io/tls"
    assert set(tls["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    ca_secret = ca_secret_manifest(state, name="accel-webhook-tls-ca", namespace="accel-system")
    assert state_from_secrets(tls, ca_secret) == state
    assert state_from_secrets(None, None) == CertState()


WEBHOOK_CONFIG = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "MutatingWebhookConfiguration",
    "metadata": {"name": "accel-mutate"},
    "webhooks": [
        {"name": "mutate.pods.accel.dev", "clientConfig": {"service": {"name": "accel-webhook"}}},
        {"name": "second.accel.dev", "clientConfig": {"caBundle": "b2xk"}},
    ],
}


def test_ca_bundle_set_on_every_webhook_without_touching_input(ca: KeyPair) -> None:
    out = with_ca_bundle(WEBHOOK_CONFIG, ca.cert_pem)
    assert [base64.b64decode(h["clientConfig"]["caBundle"]) for h in out["webhooks"]] == [ca.cert_pem] * 2
    assert "caBundle" not in WEBHOOK_CONFIG["webhooks"][0]["clientConfig"]  # type: ignore[index]
    patch = ca_bundle_patch(WEBHOOK_CONFIG, ca.cert_pem)
    assert {op["path"] for op in patch} == {
        "/webhooks/0/clientConfig/caBundle",
        "/webhooks/1/clientConfig/caBundle",
    }
    assert jsonpatch.apply_patch(WEBHOOK_CONFIG, patch) == out
    assert ca_bundle_patch(out, ca.cert_pem) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "Deployment"}, "kind"),
        ({"kind": "ValidatingWebhookConfiguration", "webhooks": []}, "webhooks"),
        ({"kind": "ValidatingWebhookConfiguration", "webhooks": ["x"]}, r"webhooks\[0\]"),
    ],
    ids=["wrong-kind", "no-webhooks", "webhook-not-object"],
)
def test_ca_bundle_rejects_bad_config(ca: KeyPair, config: dict[str, object], message: str) -> None:
    with pytest.raises(InjectionError, match=message):
        with_ca_bundle(config, ca.cert_pem)


def test_extender_ca_data_only_on_https_extenders(ca: KeyPair) -> None:
    config = {
        "kind": "KubeSchedulerConfiguration",
        "extenders": [
            {
                "urlPrefix": "https://accel-extender.accel-system.svc:8443/",
                "enableHTTPS": True,
                "tlsConfig": {"insecure": True, "caFile": "/etc/accel/ca.crt"},
            },
            {"urlPrefix": "http://other/", "enableHTTPS": False},
        ],
    }
    out = with_extender_ca(config, ca.cert_pem)
    assert base64.b64decode(out["extenders"][0]["tlsConfig"]["caData"]) == ca.cert_pem
    assert "insecure" not in out["extenders"][0]["tlsConfig"]
    assert "tlsConfig" not in out["extenders"][1]
    with pytest.raises(InjectionError, match="enableHTTPS"):
        with_extender_ca(config, ca.cert_pem, url_contains="nope")


POLICY = RotationPolicy()


def _fresh_state() -> CertState:
    return apply(
        decide(CertState(), sans=SANS, now=T0, policy=POLICY), CertState(), sans=SANS, now=T0, policy=POLICY
    )


def test_rotation_from_nothing_creates_everything_then_is_idempotent() -> None:
    decision = decide(CertState(), sans=SANS, now=T0, policy=POLICY)
    assert decision.actions == (Action.CREATE_CA, Action.ISSUE_SERVING)
    state = apply(decision, CertState(), sans=SANS, now=T0, policy=POLICY)
    assert state.ca is not None and state.serving is not None
    assert state.bundle == state.ca.cert_pem
    assert not decide(state, sans=SANS, now=T0 + timedelta(days=300), policy=POLICY).changed


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("expiring", "expires within"),
        ("new-san", "SANs differ"),
        ("foreign-issuer", "not issued by"),
        ("key-mismatch", "key does not match"),
    ],
    ids=["serving-cert-near-expiry", "service-added", "signed-by-other-ca", "key-swapped"],
)
def test_serving_cert_reissued_from_same_ca(change: str, reason: str) -> None:
    state = _fresh_state()
    assert state.ca is not None and state.serving is not None
    ca, serving = state.ca, state.serving
    now, sans = T0, SANS
    if change == "expiring":
        now = T0 + timedelta(days=340)
    elif change == "new-san":
        sans = serving_sans(
            ["accel-webhook", "accel-extender", "accel-api"],
            "accel-system",
            extra_dns=["localhost"],
            ips=["127.0.0.1"],
        )
    elif change == "foreign-issuer":
        state = CertState(
            ca=state.ca,
            bundle=state.bundle,
            serving=create_serving_cert(create_ca(now=T0), sans=SANS, now=T0),
        )
    else:
        state = CertState(ca=state.ca, bundle=state.bundle, serving=KeyPair(serving.cert_pem, ca.key_pem))
    decision = decide(state, sans=sans, now=now, policy=POLICY)
    assert decision.actions == (Action.ISSUE_SERVING,)
    assert reason in decision.reasons[0]
    new = apply(decision, state, sans=sans, now=now, policy=POLICY)
    assert new.ca == ca
    assert new.serving is not None and is_signed_by(new.serving.cert_pem, ca.cert_pem)
    assert subject_alt_names(new.serving.cert_pem) == sans
    assert not decide(new, sans=sans, now=now, policy=POLICY).changed


def test_ca_rollover_stages_then_promotes_keeping_old_ca_trusted() -> None:
    state = _fresh_state()
    assert state.ca is not None
    old_ca = state.ca
    rotator_now = [expiry(old_ca.cert_pem) - timedelta(days=300)]
    rotator = CertificateRotator(sans=SANS, policy=POLICY, clock=lambda: rotator_now[0])
    # Keep the serving cert fresh so only the CA rules fire.
    state = CertState(
        ca=old_ca, bundle=state.bundle, serving=create_serving_cert(old_ca, sans=SANS, now=rotator_now[0])
    )

    decision, staged = rotator.rotate(state)
    assert decision.actions == (Action.STAGE_NEXT_CA,)
    assert staged.ca == old_ca and staged.serving == state.serving and staged.next_ca is not None
    assert len(load_certificates(staged.bundle)) == 2  # next CA trusted before it signs anything

    assert not rotator.plan(staged).changed  # overlap not over yet
    rotator_now[0] += timedelta(days=2)
    decision, promoted = rotator.rotate(staged)
    assert decision.actions == (Action.PROMOTE_NEXT_CA, Action.ISSUE_SERVING)
    assert promoted.ca == staged.next_ca and promoted.next_ca is None
    assert promoted.serving is not None and is_signed_by(promoted.serving.cert_pem, promoted.ca.cert_pem)
    bundle = load_certificates(promoted.bundle)
    assert load_certificate(old_ca.cert_pem) in bundle  # old issuer still trusted during overlap

    rotator_now[0] = expiry(old_ca.cert_pem) + timedelta(days=1)
    decision, pruned = rotator.rotate(promoted)
    assert decision.actions == (Action.UPDATE_BUNDLE,)
    assert load_certificates(pruned.bundle) == [load_certificate(promoted.ca.cert_pem)]


def test_policy_rejects_renew_window_longer_than_validity() -> None:
    with pytest.raises(ValueError, match="renew_before"):
        RotationPolicy(renew_before=timedelta(days=400))
