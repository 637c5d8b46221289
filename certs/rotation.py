"""Decide and carry out certificate rotation: a pure decision, then one step that issues keys.

Rules (numbered so tests can cite them):
1. No usable CA (missing, key does not match) -> create a CA and a serving certificate.
2. CA within `ca_renew_before` of expiry and no next CA -> *stage* a next CA: it joins the trust
   bundle but signs nothing yet, so every client learns it before it is needed.
3. A next CA that has been trusted for `ca_overlap` -> *promote* it to signing CA and re-issue the
   serving certificate from it. The old CA stays in the bundle until it expires, so a client that
   still holds the old serving certificate, or an old bundle, never sees an unknown issuer.
4. Serving certificate missing, mismatched with its key, not issued by the signing CA, expiring
   within `renew_before`, or with SANs other than the wanted ones -> re-issue it from the same CA.
5. The bundle is always: signing CA, next CA, then every other still-valid CA it held, deduplicated;
   expired CAs drop out.
A run where nothing applies changes nothing (idempotent: `decision.changed` is False).
6. Client certificates (`ClientSecret`: kube-scheduler's, for the extender) are re-issued from the
   signing CA when missing, mismatched with their key, not issued by the signing CA, expiring
   within `renew_before`, or carrying another CN (`client_reason` / `CertificateRotator.client`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography.hazmat.primitives import serialization

from certs.issue import (
    CLOCK_SKEW,
    DEFAULT_CA_VALIDITY,
    DEFAULT_RENEW_BEFORE,
    DEFAULT_SERVING_VALIDITY,
    CertificateError,
    KeyAlgorithm,
    KeyPair,
    SubjectAltNames,
    common_name,
    create_ca,
    create_client_cert,
    create_serving_cert,
    is_signed_by,
    load_certificate,
    load_certificates,
    needs_rotation,
    subject_alt_names,
    verify_pair,
)
from certs.state import CertState


class Action(StrEnum):
    CREATE_CA = "create-ca"
    STAGE_NEXT_CA = "stage-next-ca"
    PROMOTE_NEXT_CA = "promote-next-ca"
    ISSUE_SERVING = "issue-serving"
    UPDATE_BUNDLE = "update-bundle"


@dataclass(frozen=True)
class RotationPolicy:
    """When to renew; defaults: 1-year serving cert renewed 30 days early, 10-year CA rolled 1 year early."""

    renew_before: timedelta = DEFAULT_RENEW_BEFORE
    serving_validity: timedelta = DEFAULT_SERVING_VALIDITY
    ca_validity: timedelta = DEFAULT_CA_VALIDITY
    ca_renew_before: timedelta = timedelta(days=365)
    ca_overlap: timedelta = timedelta(days=1)
    algorithm: KeyAlgorithm = "ecdsa-p256"

    def __post_init__(self) -> None:
        if self.renew_before >= self.serving_validity:
            raise ValueError(
                f"renew_before ({self.renew_before.days}d) must be shorter than the serving validity "
                f"({self.serving_validity.days}d), or every run would re-issue"
            )
        if self.ca_renew_before >= self.ca_validity:
            raise ValueError("ca_renew_before must be shorter than ca_validity")


@dataclass(frozen=True)
class RotationDecision:
    """What to do and why; `reasons` are human sentences for logs and `accel certs ensure` output."""

    actions: tuple[Action, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _usable(pair: KeyPair | None) -> bool:
    if pair is None:
        return False
    try:
        verify_pair(pair)
    except CertificateError:
        return False
    return True


def _ca_decision(state: CertState, now: datetime, policy: RotationPolicy) -> tuple[list[Action], list[str]]:
    """Rules 1-3: what happens to the CA."""
    if state.ca is None or not _usable(state.ca):
        return [Action.CREATE_CA], ["no usable CA (missing or key does not match): creating one"]
    if state.next_ca is not None and _usable(state.next_ca):
        staged_at = load_certificate(state.next_ca.cert_pem).not_valid_before_utc + CLOCK_SKEW
        if now - staged_at >= policy.ca_overlap:
            return [Action.PROMOTE_NEXT_CA], [f"next CA trusted since {staged_at.isoformat()}: promoting it"]
        return [], []
    if needs_rotation(state.ca.cert_pem, now, policy.ca_renew_before):
        return [Action.STAGE_NEXT_CA], ["CA expires within the CA renew window: staging the next CA"]
    return [], []


def _serving_reason(
    state: CertState, signer: KeyPair | None, sans: SubjectAltNames, now: datetime, policy: RotationPolicy
) -> str | None:
    """Rule 4: why the serving certificate must be re-issued, or None."""
    if state.serving is None or not _usable(state.serving):
        return "serving certificate missing or its key does not match"
    if signer is None or not is_signed_by(state.serving.cert_pem, signer.cert_pem):
        return "serving certificate is not issued by the signing CA"
    if needs_rotation(state.serving.cert_pem, now, policy.renew_before):
        return f"serving certificate expires within {policy.renew_before.days} days"
    if subject_alt_names(state.serving.cert_pem) != sans:
        return "serving certificate SANs differ from the wanted names"
    return None


def decide(
    state: CertState, *, sans: SubjectAltNames, now: datetime, policy: RotationPolicy
) -> RotationDecision:
    """Pure: which actions rules 1-5 call for on `state` at `now`."""
    actions, reasons = _ca_decision(state, now, policy)
    if Action.CREATE_CA in actions or Action.PROMOTE_NEXT_CA in actions:
        actions.append(Action.ISSUE_SERVING)
        reasons.append("serving certificate re-issued from the new signing CA")
    else:
        reason = _serving_reason(state, state.ca, sans, now, policy)
        if reason is not None:
            actions.append(Action.ISSUE_SERVING)
            reasons.append(reason)
    if not actions and _bundle_pems(state, now) != _split(state.bundle):
        actions.append(Action.UPDATE_BUNDLE)
        reasons.append("trust bundle out of date (missing a CA or holding an expired one)")
    return RotationDecision(actions=tuple(actions), reasons=tuple(reasons))


def apply(
    decision: RotationDecision,
    state: CertState,
    *,
    sans: SubjectAltNames,
    now: datetime,
    policy: RotationPolicy,
) -> CertState:
    """Carry out `decision` (this is where keys are generated); returns the new state."""
    if not decision.changed:
        return state
    new = state
    if Action.CREATE_CA in decision.actions:
        new = replace(
            new, ca=create_ca(now=now, validity=policy.ca_validity, algorithm=policy.algorithm), next_ca=None
        )
    if Action.STAGE_NEXT_CA in decision.actions:
        new = replace(
            new, next_ca=create_ca(now=now, validity=policy.ca_validity, algorithm=policy.algorithm)
        )
    if Action.PROMOTE_NEXT_CA in decision.actions:
        new = replace(new, ca=new.next_ca, next_ca=None)
    if Action.ISSUE_SERVING in decision.actions:
        assert new.ca is not None  # rules 1-3 guarantee a signing CA here
        new = replace(
            new,
            serving=create_serving_cert(
                new.ca, sans=sans, now=now, validity=policy.serving_validity, algorithm=policy.algorithm
            ),
        )
    return replace(new, bundle=b"".join(_bundle_pems(new, now)))


def _split(bundle: bytes) -> list[bytes]:
    if not bundle.strip():
        return []
    try:
        return [c.public_bytes(serialization.Encoding.PEM) for c in load_certificates(bundle)]
    except CertificateError:
        return []


def _bundle_pems(state: CertState, now: datetime) -> list[bytes]:
    """Rule 5: signing CA, next CA, then the other still-valid CAs of the old bundle, no duplicates."""
    candidates: list[bytes] = []
    for pair in (state.ca, state.next_ca):
        if pair is not None:
            candidates += _split(pair.cert_pem)[:1]
    candidates += _split(state.bundle)
    out: list[bytes] = []
    for pem in candidates:
        if pem not in out and load_certificate(pem).not_valid_after_utc > now:
            out.append(pem)
    return out


@dataclass(frozen=True)
class ClientSecret:
    """A client-certificate Secret to keep current: its name and the certificate's CN."""

    secret: str
    common_name: str


def client_reason(
    pair: KeyPair | None, *, name: str, signer: KeyPair, now: datetime, policy: RotationPolicy
) -> str | None:
    """Rule 6: why client certificate `pair` (CN `name`) must be re-issued from `signer`, or None."""
    if pair is None or not _usable(pair):
        return f"client certificate {name!r} missing or its key does not match"
    if not is_signed_by(pair.cert_pem, signer.cert_pem):
        return f"client certificate {name!r} is not issued by the signing CA"
    if needs_rotation(pair.cert_pem, now, policy.renew_before):
        return f"client certificate {name!r} expires within {policy.renew_before.days} days"
    if common_name(pair.cert_pem) != name:
        return f"client certificate CN is not {name!r}"
    return None


class CertificateRotator:
    """Rotation for one set of SANs under one policy, with an injected clock."""

    def __init__(
        self, *, sans: SubjectAltNames, policy: RotationPolicy, clock: Callable[[], datetime]
    ) -> None:
        self.sans = sans
        self.policy = policy
        self.clock = clock

    def plan(self, state: CertState) -> RotationDecision:
        return decide(state, sans=self.sans, now=self.clock(), policy=self.policy)

    def rotate(self, state: CertState) -> tuple[RotationDecision, CertState]:
        """Decide and apply in one call at one instant; returns (decision, new state)."""
        now = self.clock()
        decision = decide(state, sans=self.sans, now=now, policy=self.policy)
        return decision, apply(decision, state, sans=self.sans, now=now, policy=self.policy)

    def client(
        self, pair: KeyPair | None, *, name: str, signer: KeyPair
    ) -> tuple[str | None, KeyPair | None]:
        """Rule 6 at one instant: (reason, new pair) when re-issued, (None, pair) when current."""
        now = self.clock()
        reason = client_reason(pair, name=name, signer=signer, now=now, policy=self.policy)
        if reason is None:
            return None, pair
        issued = create_client_cert(
            signer,
            common_name=name,
            now=now,
            validity=self.policy.serving_validity,
            algorithm=self.policy.algorithm,
        )
        return reason, issued
