"""`accel certs ...`: create, store, inject and rotate the webhook/extender/API certificates.

create     CA + serving cert into a directory (reuses the CA found there)
client     a client certificate from that CA (kube-scheduler's for the extender, a proxy's for the
           API) into a directory: tls.crt, tls.key and the ca.crt bundle
secret     print the Secrets for a cert directory as YAML, or --apply them
inject-ca  set caBundle on webhook configurations (and caData on a scheduler config) from -f FILE,
           or --apply to the named configurations in the cluster
check      print a certificate's expiry; exit 1 when it is inside the renew window
ensure     idempotent create-or-rotate of the Secrets in the cluster + caBundle injection, and of
           client-certificate Secrets given by --client SECRET=CN (the install Job and the daily
           CronJob run exactly this)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from certs.inject import WEBHOOK_CONFIG_KINDS, InjectionError, with_ca_bundle, with_extender_ca
from certs.issue import (
    LOCAL_IPS,
    LOCAL_NAMES,
    CertificateError,
    create_ca,
    create_client_cert,
    create_serving_cert,
    expiry,
    needs_rotation,
    serving_sans,
)
from certs.rotation import CertificateRotator, ClientSecret, RotationPolicy
from certs.state import (
    CertState,
    ca_secret_manifest,
    ca_secret_name,
    read_cert_dir,
    serving_secret_manifest,
    write_cert_dir,
)

T = TypeVar("T")
DEFAULT_SECRET = "accel-webhook-tls"
DEFAULT_NAMESPACE = "accel-system"
DEFAULT_CLIENT_NAME = "accel-scheduler"


def _now() -> datetime:
    return datetime.now(UTC)


def _add_san_args(p: argparse.ArgumentParser, *, service_required: bool) -> None:
    p.add_argument(
        "--service",
        action="append",
        required=service_required,
        default=[],
        help="Service name the certificate must cover (repeatable)",
    )
    p.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="namespace of the Services (default %(default)s)"
    )
    p.add_argument("--dns", action="append", default=[], help="extra DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
    p.add_argument("--local", action="store_true", help="also cover localhost, 127.0.0.1 and ::1")
    p.add_argument("--key-type", choices=("ecdsa-p256", "rsa-2048"), default="ecdsa-p256")


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig path (default: in-cluster, then KUBECONFIG)"
    )
    p.add_argument("--context", default=None, help="kubeconfig context")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `accel certs` and its sub-commands."""
    certs = subparsers.add_parser(
        "certs",
        help="CA/serving certificates and caBundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="CA + serving certificate into a directory")
    p.add_argument("--out-dir", type=Path, required=True)
    _add_san_args(p, service_required=True)
    p.add_argument("--days", type=int, default=365, help="serving certificate validity (default %(default)s)")
    p.add_argument("--ca-days", type=int, default=3650, help="CA validity when a CA is created")
    p.add_argument("--new-ca", action="store_true", help="make a new CA even if the directory has one")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser(
        "client", help="a client certificate (e.g. kube-scheduler's) from the CA of a cert directory"
    )
    p.add_argument(
        "--cert-dir",
        type=Path,
        required=True,
        help="directory written by `accel certs create` (its CA signs)",
    )
    p.add_argument(
        "--name",
        default=DEFAULT_CLIENT_NAME,
        help="the client's identity, the certificate CN (default %(default)s)",
    )
    p.add_argument(
        "--out-dir", type=Path, required=True, help="where tls.crt, tls.key and ca.crt are written"
    )
    p.add_argument("--days", type=int, default=365, help="validity (default %(default)s)")
    p.add_argument("--key-type", choices=("ecdsa-p256", "rsa-2048"), default="ecdsa-p256")
    p.set_defaults(func=cmd_client)

    p = sub.add_parser("secret", help="print (or --apply) the Secrets for a cert directory")
    p.add_argument("--cert-dir", type=Path, required=True)
    p.add_argument("--name", default=DEFAULT_SECRET, help="serving Secret name (CA Secret: NAME-ca)")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    p.add_argument(
        "--apply", action="store_true", help="create/replace them in the cluster instead of printing"
    )
    _add_cluster_args(p)
    p.set_defaults(func=cmd_secret)

    p = sub.add_parser("inject-ca", help="set caBundle / caData from a CA file")
    p.add_argument("--ca", type=Path, required=True, help="PEM CA bundle (ca.crt)")
    p.add_argument(
        "--webhook-config",
        action="append",
        default=[],
        help="configuration name, optionally mutating:NAME / validating:NAME (repeatable)",
    )
    p.add_argument("-f", "--filename", type=Path, help="YAML file to patch and print (all documents)")
    p.add_argument("--apply", action="store_true", help="patch the named configurations in the cluster")
    _add_cluster_args(p)
    p.set_defaults(func=cmd_inject_ca)

    p = sub.add_parser("check", help="print expiry; exit 1 inside the renew window")
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--renew-before-days", type=int, default=30)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("ensure", help="create or rotate the Secrets in the cluster and inject caBundle")
    _add_san_args(p, service_required=True)
    p.add_argument("--secret", default=DEFAULT_SECRET, help="serving Secret name (CA Secret: NAME-ca)")
    p.add_argument(
        "--webhook-config", action="append", default=[], help="configuration to inject (repeatable)"
    )
    p.add_argument("--renew-before-days", type=int, default=30)
    p.add_argument("--days", type=int, default=365, help="serving certificate validity")
    p.add_argument(
        "--client", action="append", default=[], metavar="SECRET=CN",
        help="also keep a client-certificate Secret (tls.crt, tls.key, ca.crt) with this CN, e.g. "
             "accel-scheduler-client=accel-scheduler (repeatable)",
    )
    _add_cluster_args(p)
    p.set_defaults(func=cmd_ensure)


def _fail(message: str) -> int:
    print(f"accel certs: error: {message}", file=sys.stderr)
    return 2


def _sans(args: argparse.Namespace) -> Any:
    extra_dns = [*args.dns, *(LOCAL_NAMES if args.local else ())]
    ips = [*args.ip, *(LOCAL_IPS if args.local else ())]
    return serving_sans(args.service, args.namespace, extra_dns=extra_dns, ips=ips)


def cmd_create(args: argparse.Namespace) -> int:
    """Write ca.crt, ca.key, ca-signing.crt, tls.crt, tls.key into --out-dir."""
    try:
        now, sans = _now(), _sans(args)
        existing = read_cert_dir(args.out_dir)
        ca = existing.ca if existing.ca is not None and not args.new_ca else None
        if ca is None:
            ca = create_ca(now=now, validity=timedelta(days=args.ca_days), algorithm=args.key_type)
        serving = create_serving_cert(
            ca, sans=sans, now=now, validity=timedelta(days=args.days), algorithm=args.key_type
        )
        bundle = existing.bundle if ca == existing.ca and existing.bundle else ca.cert_pem
        write_cert_dir(args.out_dir, CertState(ca=ca, bundle=bundle, serving=serving))
    except (CertificateError, OSError) as exc:
        return _fail(str(exc))
    print(
        f"wrote {args.out_dir}/{{ca.crt,tls.crt,tls.key}}; serving certificate expires "
        f"{expiry(serving.cert_pem):%Y-%m-%d}"
    )
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    """Write tls.crt, tls.key (0600) and ca.crt (the trust bundle) into --out-dir."""
    state = read_cert_dir(args.cert_dir)
    if state.ca is None:
        return _fail(
            f"--cert-dir {args.cert_dir}: no CA (ca-signing.crt + ca.key); run "
            f"`accel certs create --out-dir {args.cert_dir} ...` first"
        )
    try:
        client = create_client_cert(
            state.ca,
            common_name=args.name,
            now=_now(),
            validity=timedelta(days=args.days),
            algorithm=args.key_type,
        )
        write_cert_dir(args.out_dir, CertState(bundle=state.bundle or state.ca.cert_pem, serving=client))
    except (CertificateError, OSError) as exc:
        return _fail(str(exc))
    print(
        f"wrote {args.out_dir}/{{tls.crt,tls.key,ca.crt}} for client {args.name!r}; "
        f"expires {expiry(client.cert_pem):%Y-%m-%d}"
    )
    return 0


def _dump(docs: list[dict[str, Any]]) -> None:
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))


def _run_cluster(args: argparse.Namespace, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open a REST transport from the kubeconfig options, run `work(transport)`, close it."""
    from kube.client import ApiClientFactory
    from kube.rest import RestTransport

    async def main() -> T:
        api_client = await ApiClientFactory(args.kubeconfig, context=args.context).create()
        try:
            return await work(RestTransport(api_client))
        finally:
            await api_client.close()

    return asyncio.run(main())


def cmd_secret(args: argparse.Namespace) -> int:
    state = read_cert_dir(args.cert_dir)
    try:
        docs = [serving_secret_manifest(state, name=args.name, namespace=args.namespace)]
    except ValueError as exc:
        return _fail(f"{args.cert_dir}: {exc}; run `accel certs create --out-dir {args.cert_dir} ...` first")
    if state.ca is not None:
        docs.append(ca_secret_manifest(state, name=ca_secret_name(args.name), namespace=args.namespace))
    if not args.apply:
        _dump(docs)
        return 0
    from kube.certificates import KubeSecretStore
    from kube.errors import KubeError

    async def apply(transport: Any) -> None:
        store = KubeSecretStore(transport, args.namespace)
        for doc in docs:
            current = await store.get(doc["metadata"]["name"])
            if current is None:
                await store.create(doc)
            else:
                await store.replace({**doc, "metadata": {**doc["metadata"], **current["metadata"]}})
            print(f"secret/{doc['metadata']['name']} applied in {args.namespace}")

    try:
        _run_cluster(args, apply)
    except KubeError as exc:
        return _fail(str(exc))
    return 0


def _patch_docs(docs: list[Any], ca_pem: bytes, names: list[str]) -> list[Any]:
    wanted = {n.partition(":")[2] or n for n in names}
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in WEBHOOK_CONFIG_KINDS:
            if not wanted or (doc.get("metadata") or {}).get("name") in wanted:
                doc = with_ca_bundle(doc, ca_pem)
        elif isinstance(doc, dict) and doc.get("kind") == "KubeSchedulerConfiguration":
            doc = with_extender_ca(doc, ca_pem)
        out.append(doc)
    return out


def cmd_inject_ca(args: argparse.Namespace) -> int:
    try:
        ca_pem = args.ca.read_bytes()
    except OSError as exc:
        return _fail(f"--ca {args.ca}: {exc}")
    if args.filename is None and not args.apply:
        return _fail(
            "give -f FILE to patch a file, or --apply with --webhook-config NAME to patch the cluster"
        )
    if args.filename is not None:
        try:
            docs = [d for d in yaml.safe_load_all(args.filename.read_text()) if d is not None]
            _dump(_patch_docs(docs, ca_pem, args.webhook_config))
        except (OSError, yaml.YAMLError, InjectionError) as exc:
            return _fail(f"{args.filename}: {exc}")
        return 0
    if not args.webhook_config:
        return _fail("--apply needs at least one --webhook-config NAME")
    from kube.certificates import KubeWebhookConfigStore, inject_ca_bundle
    from kube.errors import KubeError

    try:
        patched = _run_cluster(
            args, lambda t: inject_ca_bundle(KubeWebhookConfigStore(t), args.webhook_config, ca_pem)
        )
    except (KubeError, InjectionError) as exc:
        return _fail(str(exc))
    print("patched: " + (", ".join(patched) if patched else "nothing (caBundle already current)"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when valid beyond the renew window, 1 inside it, 2 when unreadable."""
    try:
        pem = args.cert.read_bytes()
        not_after = expiry(pem)
    except (OSError, CertificateError) as exc:
        return _fail(f"--cert {args.cert}: {exc}")
    now = _now()
    due = needs_rotation(pem, now, timedelta(days=args.renew_before_days))
    days_left = (not_after - now).total_seconds() / 86400
    state = "renew now" if due else "ok"
    print(f"{args.cert}: expires {not_after.isoformat()} ({days_left:.1f} days left): {state}")
    return 1 if due else 0


def parse_client_spec(spec: str) -> ClientSecret:
    """`SECRET=CN` -> ClientSecret; ValueError with the expected form otherwise."""
    secret, sep, name = spec.partition("=")
    if not sep or not secret.strip() or not name.strip():
        raise ValueError(
            f"--client {spec!r}: expected SECRET=CN, e.g. accel-scheduler-client=accel-scheduler"
        )
    return ClientSecret(secret=secret.strip(), common_name=name.strip())


def cmd_ensure(args: argparse.Namespace) -> int:
    from kube.certificates import KubeSecretStore, KubeWebhookConfigStore, ensure_certificates
    from kube.errors import KubeError

    try:
        clients = [parse_client_spec(spec) for spec in args.client]
        policy = replace(
            RotationPolicy(),
            renew_before=timedelta(days=args.renew_before_days),
            serving_validity=timedelta(days=args.days),
            algorithm=args.key_type,
        )
        rotator = CertificateRotator(sans=_sans(args), policy=policy, clock=_now)
    except (ValueError, CertificateError) as exc:
        return _fail(str(exc))

    async def work(transport: Any) -> Any:
        return await ensure_certificates(
            secrets=KubeSecretStore(transport, args.namespace),
            webhooks=KubeWebhookConfigStore(transport),
            namespace=args.namespace,
            secret_name=args.secret,
            webhook_configs=args.webhook_config,
            rotator=rotator,
            clients=clients,
        )

    try:
        result = _run_cluster(args, work)
    except (KubeError, InjectionError, CertificateError) as exc:
        return _fail(str(exc))
    for reason in result.decision.reasons:
        print(f"rotate: {reason}")
    print(
        f"secrets written: {', '.join(result.secrets_written) or 'none'}; "
        f"configurations patched: {', '.join(result.configs_patched) or 'none'}"
    )
    return 0
