"""Issue and inspect the CA and the serving certificate (X.509, PEM).

Contract:
1. `create_ca` makes a self-signed CA: BasicConstraints CA:true (pathlen 0), KeyUsage
   keyCertSign + cRLSign, SubjectKeyIdentifier.
2. `create_serving_cert` signs a leaf with the CA: CA:false, digitalSignature (+ keyEncipherment for
   RSA), ExtendedKeyUsage serverAuth, SubjectAltName = the given DNS names and IPs. Its not-after is
   clamped to the CA's, so a leaf never outlives its issuer.
2a. `create_client_cert` signs a client leaf (kube-scheduler calling the extender, a proxy calling
   the API): CN = the client's name, ExtendedKeyUsage clientAuth only, no SANs. A serving
   certificate cannot stand in for it (OpenSSL checks the clientAuth purpose), nor it for a
   serving certificate.
3. Keys are ECDSA P-256 by default (small, fast handshakes) or RSA 2048 for old clients.
4. Every time is timezone-aware UTC; the caller passes `now` so tests need no wall clock.

The apiserver checks a webhook's certificate against `<svc>.<ns>.svc`; `service_dns_names` gives the
four spellings a Service is reached by. See
https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyAlgorithm = Literal["ecdsa-p256", "rsa-2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_CA_VALIDITY = timedelta(days=3650)
DEFAULT_SERVING_VALIDITY = timedelta(days=365)
DEFAULT_RENEW_BEFORE = timedelta(days=30)
# Backdate not-before a little so a node whose clock lags ours still accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)
LOCAL_NAMES: tuple[str, ...] = ("localhost",)
LOCAL_IPS: tuple[str, ...] = ("127.0.0.1", "::1")


class CertificateError(ValueError):
    """A PEM blob is not what it should be (unparsable, mismatched key, wrong issuer)."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class SubjectAltNames:
    """DNS names and IP addresses a certificate is valid for (normalised, order-free)."""

    dns: frozenset[str]
    ips: frozenset[str]

    @classmethod
    def of(cls, dns: Iterable[str] = (), ips: Iterable[str] = ()) -> SubjectAltNames:
        """Normalise names (lowercase) and IPs (canonical text); raises CertificateError on a bad IP."""
        try:
            ip_set = frozenset(str(ipaddress.ip_address(ip.strip())) for ip in ips)
        except ValueError as exc:
            raise CertificateError(f"invalid IP address in SANs: {exc}; use e.g. 127.0.0.1 or ::1") from exc
        return cls(dns=frozenset(d.strip().lower() for d in dns if d.strip()), ips=ip_set)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The four names a Service is reached by, shortest first."""
    if not service or not namespace:
        raise CertificateError("service and namespace must be non-empty (e.g. --service accel-webhook)")
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def serving_sans(
    services: Sequence[str], namespace: str, *, extra_dns: Iterable[str] = (), ips: Iterable[str] = ()
) -> SubjectAltNames:
    """SANs for one certificate that covers every listed Service plus extra names and IPs."""
    dns = [name for svc in services for name in service_dns_names(svc, namespace)]
    return SubjectAltNames.of([*dns, *extra_dns], ips)


def _new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise CertificateError(f"unknown key algorithm {algorithm!r}; use 'ecdsa-p256' or 'rsa-2048'")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_ca(
    *,
    now: datetime,
    common_name: str | None = None,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> KeyPair:
    """A new self-signed CA valid from `now - CLOCK_SKEW` for `validity`.

    The default CN is `accel-ca@<unix seconds>` (as kube-apiserver names its own CAs) so an old and a
    new CA in one bundle have different subjects and can be told apart in logs.
    """
    key = _new_key(algorithm)
    cn = common_name or f"accel-ca@{int(now.timestamp())}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True, key_encipherment=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def _key_usage(*, cert_sign: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def create_serving_cert(
    ca: KeyPair,
    *,
    sans: SubjectAltNames,
    now: datetime,
    validity: timedelta = DEFAULT_SERVING_VALIDITY,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> KeyPair:
    """A serving certificate for `sans`, signed by `ca`; the first DNS name becomes the CN."""
    if not sans.dns and not sans.ips:
        raise CertificateError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = load_certificate(ca.cert_pem)
    ca_key = load_private_key(ca.key_pem)
    key = _new_key(algorithm)
    general: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(sans.dns)]
    general += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(sans.ips)]
    # CN is informational (clients check SANs); prefer a Service name over "localhost".
    service_names = sorted(d for d in sans.dns if ".svc" in d) or sorted(sans.dns)
    common_name = min(service_names, key=len) if service_names else sorted(sans.ips)[0]
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(cert_sign=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey)), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def create_client_cert(
    ca: KeyPair,
    *,
    common_name: str,
    now: datetime,
    validity: timedelta = DEFAULT_SERVING_VALIDITY,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> KeyPair:
    """A client certificate whose subject CN is `common_name` (the identity servers check), signed by `ca`."""
    if not common_name or len(common_name) > 64:
        raise CertificateError(
            "a client certificate needs a common name of 1-64 characters (e.g. accel-scheduler)"
        )
    ca_cert = load_certificate(ca.cert_pem)
    ca_key = load_private_key(ca.key_pem)
    key = _new_key(algorithm)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(cert_sign=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey)), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def common_name(cert_pem: bytes) -> str:
    """The subject CN of the first certificate ("" when it has none)."""
    attrs = load_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode()


def load_certificate(cert_pem: bytes) -> x509.Certificate:
    """The first certificate in a PEM blob; CertificateError if there is none or it is garbled."""
    certs = load_certificates(cert_pem)
    return certs[0]


def load_certificates(bundle_pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (at least one), in order."""
    try:
        certs = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate (or a truncated one): {exc}") from exc
    if not certs:
        raise CertificateError("no certificate found in PEM data")
    return certs


def load_private_key(key_pem: bytes) -> PrivateKey:
    """An unencrypted PEM private key (EC or RSA)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not an unencrypted PEM private key (or a truncated one): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"unsupported private key type {type(key).__name__}; use EC P-256 or RSA")
    return key


def verify_pair(pair: KeyPair) -> x509.Certificate:
    """Check the key belongs to the certificate; returns the parsed certificate."""
    cert = load_certificate(pair.cert_pem)
    key = load_private_key(pair.key_pem)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CertificateError("private key does not match the certificate (tls.key is not for tls.crt)")
    return cert


def is_signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True when `ca_pem` issued `cert_pem` (issuer name and signature both check out)."""
    cert, ca = load_certificate(cert_pem), load_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def expiry(cert_pem: bytes) -> datetime:
    """Not-after of the first certificate in `cert_pem`, as an aware UTC datetime."""
    return load_certificate(cert_pem).not_valid_after_utc


def needs_rotation(cert_pem: bytes, now: datetime, before: timedelta = DEFAULT_RENEW_BEFORE) -> bool:
    """True when the certificate expires within `before` of `now` (or already has)."""
    return expiry(cert_pem) - before <= _aware(now)


def subject_alt_names(cert_pem: bytes) -> SubjectAltNames:
    """The SANs of the first certificate (empty when it has no SAN extension)."""
    cert = load_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SubjectAltNames(frozenset(), frozenset())
    return SubjectAltNames.of(
        ext.get_values_for_type(x509.DNSName), (str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    )


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
