"""`accel serve webhook|extender|api`: run one server against a cluster, a snapshot or a policy dir.

With `--snapshot FILE` the servers run on an in-memory API server (`kube.fake.FakeCluster`) loaded
with the snapshot, so the quota ledger, bindings and token reviews behave exactly as on a cluster,
just without one. Without `--snapshot` they use the kubeconfig (in-cluster first).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import EllipsisType
from typing import Any

from aiohttp import web

from accel.cluster.catalog import load_builtin_catalog
from cli.state import CliError, add_source_arguments, read_policy_files
from kube.hardware_profile_source import HardwareProfileSource
from kube.informer import ClusterWatcher
from kube.policy_source import PolicySource
from kube.protocol import (
    Annotator,
    Binder,
    CasStore,
    EventRecorder,
    LeaseStore,
    ObjectSource,
    TokenReviewer,
)
from serving.cluster_state import ClusterState
from serving.metrics import Metrics

log = logging.getLogger(__name__)
COMPONENTS = ("webhook", "extender", "api")
DEFAULT_SCHEDULER_CLIENT = "accel-scheduler"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
READY_POLL_S = 0.5


@dataclass
class ClusterDeps:
    """The Kubernetes IO a server needs, from a real cluster or an in-memory one."""

    source: ObjectSource
    cas: CasStore
    binder: Binder
    events: EventRecorder
    tokens: TokenReviewer
    close: Callable[[], Any] | None = None
    annotator: Annotator | None = None  # notes on HardwareProfiles (the API server only)
    leases: LeaseStore | None = None  # the quota ledger leader's Lease (webhook --peer-port)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="run the webhook, the scheduler extender or the API server")
    parser.add_argument(
        "component",
        choices=COMPONENTS,
        help="which server: the admission webhook, the scheduler extender or the hardware-profile API and "
        "web page",
    )
    add_source_arguments(parser)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=8443,
        help="TCP port to listen on; 0 picks a free one, logged at start (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve /metrics on this port instead, plain HTTP on --host, for Prometheus only (the per-team "
        "quota, GPU-hour and cost series; README: Security): /metrics on --port then answers 404; 0 picks "
        "a free port, logged at start (default: /metrics on --port)",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="share --port with other `accel serve` processes (SO_REUSEPORT; the kernel spreads new "
        "connections over them): several webhook processes in one pod use several cores (docs/deploy.md)",
    )
    parser.add_argument(
        "--peer-port", type=int, metavar="N",
        help="webhook: listen on this port (TLS) for the other webhook replicas, which send the quota "
             "step of their admissions to the elected quota ledger leader instead of racing it for the "
             "ledger (Lease accel-quota-ledger-leader; README: Quota); needs --peer-cert-dir; 0 picks a "
             "free port (default: off, every replica writes the ledger itself)",
    )
    parser.add_argument(
        "--peer-address", metavar="HOST",
        help="webhook: the address other replicas reach this process at (default: $POD_IP, else --host "
             "when it is one address, else this host name's address)",
    )
    parser.add_argument(
        "--peer-cert-dir", metavar="DIR",
        help="webhook: this replica's client certificate for the peer listeners (tls.crt, tls.key with "
             "CN accel-webhook, and ca.crt, which also verifies the other replicas): `accel certs client "
             "--name accel-webhook` or the accel-webhook-peer Secret",
    )
    parser.add_argument(
        "--peer-server-name", metavar="NAME",
        help="webhook: the name the other replicas' serving certificate carries (they are dialled by "
             "address; default accel-webhook.NAMESPACE.svc)",
    )
    parser.add_argument(
        "--cert-dir", metavar="DIR", help="directory with tls.crt and tls.key (reloaded when they change)"
    )
    parser.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="serve HTTP without TLS (extender/api, local use only; never the webhook)",
    )
    parser.add_argument(
        "--client-ca",
        metavar="FILE",
        help="CA bundle that client certificates must chain to (extender: default CERT_DIR/ca.crt, the CA "
        "`accel certs` issues the scheduler's certificate from; api: the trusted proxy's CA, none by "
        "default)",
    )
    parser.add_argument(
        "--client-name", action="append", default=[], metavar="CN",
        help=f"extender: client-certificate CN allowed to call /filter /prioritize /bind /preempt "
             f"(repeatable; default {DEFAULT_SCHEDULER_CLIENT}); webhook: opt in to requiring the API "
             f"server's client certificate with this CN on /mutate /validate (README: Security)",
    )
    parser.add_argument(
        "--annotation-writer", action="append", default=[], metavar="USERNAME",
        help="webhook: a username (as the API server reports it) that may change the pod annotations "
        "and labels accel froze at admission (repeatable; default: the shipped accel-extender and "
        "accel-webhook service accounts of the controller namespace; README: Security)",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="extender: let any caller use the verbs (local experiments only; anyone who reaches the port "
        "can bind pods)",
    )
    parser.add_argument(
        "--dev-identity", metavar="GROUPS",
        help="api with --snapshot only (local use): treat callers without a token as these comma-separated "
             "groups, e.g. team:nlp, so the web page shows what that team sees",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=os.environ.get("ACCEL_LOG_LEVEL", "INFO").upper(),
        help="least severe log level written to stderr as JSON lines (default: $ACCEL_LOG_LEVEL or INFO)",
    )
    parser.set_defaults(func=_run)


def snapshot_cluster(path: str, namespace: str) -> ClusterDeps:
    """An in-memory API server holding the snapshot's objects."""
    from kube.fake import FakeCluster
    from kube.snapshot import SnapshotError, load_snapshot

    try:
        snapshot = load_snapshot(path)
    except SnapshotError as exc:
        raise CliError(str(exc)) from exc
    cluster = FakeCluster(controller_namespace=namespace)
    for kind in ("namespaces", "nodes", "configmaps", "pods"):
        for obj in snapshot.of(kind):
            cluster.apply(obj)
    return ClusterDeps(
        source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster, annotator=cluster,
        leases=cluster,
    )


async def real_cluster(kubeconfig: str | None, namespace: str) -> ClusterDeps:
    from kube.client import ApiClientFactory, NoClusterError
    from kube.real import KubeCluster

    try:
        api = await ApiClientFactory(kubeconfig).create()
    except NoClusterError as exc:
        raise CliError(str(exc)) from exc
    cluster = KubeCluster(api, controller_namespace=namespace)
    return ClusterDeps(
        source=cluster.source,
        cas=cluster.cas,
        binder=cluster.binder,
        events=cluster.events,
        tokens=cluster.tokens,
        close=cluster.close,
        annotator=cluster.annotator,
        leases=cluster.leases,
    )


def build_state(
    deps: ClusterDeps,
    *,
    namespace: str,
    policy_files: dict[str, str] | None,
    metrics: Metrics,
    app_name: str,
    min_rebuild_interval_s: float = 0.2,
) -> ClusterState:
    """Watches + last good policy for one server; `min_rebuild_interval_s=0` rebuilds on every change
    (the demo uses it so a run is reproducible event by event)."""
    watcher = ClusterWatcher(deps.source, controller_namespace=namespace)
    state = ClusterState(
        catalog=load_builtin_catalog(),
        namespace=namespace,
        watcher=watcher,
        fixed_policy=policy_files,
        metrics=metrics,
        app_name=app_name,
        min_rebuild_interval_s=min_rebuild_interval_s,
    )
    if policy_files is None:
        state.policy_source = PolicySource(watcher.policy, state.on_policy, events=deps.events)
    # HardwareProfiles join the policy from files or from the ConfigMap alike.
    state.hardware_profile_source = HardwareProfileSource(
        watcher, state.on_hardware_profiles, events=deps.events
    )
    return state


def make_component_app(
    component: str,
    state: ClusterState,
    deps: ClusterDeps,
    metrics: Metrics,
    *,
    client_names: tuple[str, ...] | EllipsisType | None = ...,
    dev_identity: tuple[str, ...] | None = None,
    annotation_writers: tuple[str, ...] | None = None,
) -> web.Application:
    """The aiohttp app for one component, with the cluster watches running for its lifetime.

    `client_names`: the client-certificate CNs the extender or the webhook answers; None: anyone;
    `...` (default): each component's default, kube-scheduler's CN for the extender, anyone for
    the webhook (its client certificate is opt-in).
    `dev_identity`: the API's stand-in groups for anonymous callers (see `dev_identity_groups`).
    `annotation_writers`: who may change the pod keys frozen at admission (webhook; None: the
    shipped service accounts of `state.namespace`, accel.admission.update rule 2)."""
    warm: Callable[[], object] = _nothing_to_warm
    if component == "webhook":
        from accel.admission.update import default_writers
        from webhook.app import make_app as make_webhook

        writers = annotation_writers if annotation_writers is not None else default_writers(state.namespace)
        app: web.Application = make_webhook(
            state,
            metrics=metrics,
            ledger_store=deps.cas,
            pod_source=deps.source,
            replica_id=socket.gethostname(),
            client_names=None if client_names is ... else client_names,
            annotation_writers=writers,
        )
    elif component == "extender":
        from extender.app import make_app as make_extender
        from extender.app import warm_up

        names = (DEFAULT_SCHEDULER_CLIENT,) if client_names is ... else client_names
        app = make_extender(
            state,
            metrics=metrics,
            binder=deps.binder,
            client_names=names,
            events=deps.events,
            ledger_store=deps.cas,
        )
        warm = partial(warm_up, app)
    else:
        from api.app import make_app as make_api
        from serving.chargeback import ChargebackCounter, run_chargeback

        app = make_api(state, metrics=metrics, token_reviewer=deps.tokens, dev_identity=dev_identity)
        counter = ChargebackCounter(state, deps.cas, metrics.registry, identity=socket.gethostname())
        app.cleanup_ctx.append(run_chargeback(counter))
        if deps.annotator is not None:
            from serving.hardware_profile_notes import run_hardware_profile_notes

            app.cleanup_ctx.append(run_hardware_profile_notes(state, deps.annotator))
    app.cleanup_ctx.append(_run_state(state))
    app.cleanup_ctx.append(_freeze_when_ready(state, warm))
    return app


def _nothing_to_warm() -> None:
    """The webhook and the API build nothing beyond the state before their first request."""


def freeze_heap() -> None:
    """Move every object alive now into the collector's permanent generation (`gc.freeze`).

    Called once the cluster state and the caches built from it are loaded: at 5000 nodes that is
    millions of long-lived objects, and every full collection would walk them all again (100+ ms
    pauses, one in a few hundred requests). Frozen objects are still freed by reference counting;
    only garbage cycles among them would stay, and they are built once, at start-up.
    """
    gc.collect()
    gc.freeze()


def _freeze_when_ready(
    state: ClusterState, warm: Callable[[], object]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Once the state is ready: `warm()` (the extender builds its index), then `freeze_heap`."""

    async def wait_and_freeze() -> None:
        while not state.ready()[0]:
            await asyncio.sleep(READY_POLL_S)
        warm()
        freeze_heap()
        inventory = state.view().inventory
        log.info("ready", extra={"nodes": len(inventory.nodes), "accelerator_pods": len(inventory.pods)})
        log.debug("heap frozen after loading", extra={"frozen_objects": gc.get_freeze_count()})

    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(wait_and_freeze(), name="freeze-heap")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context


def _run_state(state: ClusterState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(state.run(), name="cluster-state")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context


def _run(args: argparse.Namespace) -> int:
    from serving.logs import setup_logging
    from serving.run import CannotListen, PlaintextRefused

    setup_logging(args.log_level)
    from certs.issue import CertificateError

    try:
        asyncio.run(_serve(args))
    except (CliError, PlaintextRefused, CertificateError, CannotListen) as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 1
    return 0


def client_auth(args: argparse.Namespace) -> tuple[Path | None, tuple[str, ...] | None]:
    """(client CA file to verify against, client CNs the component requires or None) from the flags.

    The extender authenticates kube-scheduler by client certificate unless told
    `--allow-unauthenticated`; that needs TLS. The webhook requires the API server's client
    certificate only when given `--client-name` (the API server presents one only when its
    AdmissionConfiguration says so). The API verifies client certificates only when `--client-ca`
    names its trusted proxy's CA (browsers are never asked for one otherwise)."""
    given = Path(args.client_ca) if args.client_ca else None
    if given is not None and not args.cert_dir:
        raise CliError("--client-ca needs --cert-dir: client certificates are only verified over TLS")
    if args.allow_unauthenticated and args.component != "extender":
        raise CliError("--allow-unauthenticated applies to `accel serve extender` only")
    if args.component == "api":
        if args.client_name:
            raise CliError(
                "--client-name applies to `accel serve extender` and `accel serve webhook`; the API "
                "names its trusted proxy in settings (api.trustedProxyNames)"
            )
        return given, None
    if args.component == "webhook" and not args.client_name:
        return given, None
    if args.allow_unauthenticated:
        log.warning(
            "extender verbs are open to any caller (--allow-unauthenticated): anyone who reaches the port "
            "can bind pods"
        )
        return given, None
    if not args.cert_dir:
        raise CliError(
            f"the {args.component} authenticates "
            f"{'kube-scheduler' if args.component == 'extender' else 'the API server'} "
            "by client certificate, which needs TLS: give --cert-dir "
            "(and --client-ca), or --allow-unauthenticated for a local experiment"
        )
    ca = given or Path(args.cert_dir) / "ca.crt"
    if not ca.is_file():
        raise CliError(
            f"--client-ca {ca}: no such file; give the CA that issued the caller's client certificate"
        )
    return ca, tuple(args.client_name) or (DEFAULT_SCHEDULER_CLIENT,)


def metrics_port(args: argparse.Namespace) -> int | None:
    """`--metrics-port` checked: a TCP port (0: any free one) other than the serving port."""
    port: int | None = args.metrics_port
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise CliError(f"--metrics-port {port}: give a TCP port, 1-65535 (or 0 for any free one)")
    if port != 0 and port == args.port:
        raise CliError(
            f"--metrics-port {port} is the serving port (--port): give the metrics listener its own port"
        )
    return port


@dataclass(frozen=True)
class PeerOptions:
    """The webhook's peer listener and ledger leader election (`--peer-*`)."""

    port: int
    advertise: str
    client_cert_dir: Path
    server_name: str


def peer_options(args: argparse.Namespace) -> PeerOptions | None:
    """`--peer-port` and friends checked (None: off); a CliError says what is missing."""
    others = (("--peer-address", args.peer_address), ("--peer-cert-dir", args.peer_cert_dir),
              ("--peer-server-name", args.peer_server_name))
    given = [flag for flag, value in others if value]
    if args.peer_port is None:
        if given:
            raise CliError(f"{', '.join(given)} need --peer-port (the webhook's peer listener)")
        return None
    if args.component != "webhook":
        raise CliError("--peer-port applies to `accel serve webhook` only (the quota ledger's replicas)")
    taken = (args.port, args.metrics_port)
    if not 0 <= args.peer_port <= 65535 or (args.peer_port != 0 and args.peer_port in taken):
        raise CliError(f"--peer-port {args.peer_port}: give a free TCP port of its own (0: any free one)")
    if not args.cert_dir:
        raise CliError("--peer-port needs --cert-dir: the peer listener serves TLS with that certificate")
    if not args.peer_cert_dir:
        raise CliError(
            "--peer-port needs --peer-cert-dir DIR with this replica's client certificate (CN "
            "accel-webhook): `accel certs client --cert-dir CERT_DIR --name accel-webhook --out-dir DIR`"
        )
    folder = Path(args.peer_cert_dir)
    missing = [name for name in ("tls.crt", "tls.key", "ca.crt") if not (folder / name).is_file()]
    if missing:
        raise CliError(f"--peer-cert-dir {folder}: missing {', '.join(missing)}")
    advertise = args.peer_address or os.environ.get("POD_IP") or (
        args.host if args.host not in ("0.0.0.0", "::", "") else socket.gethostbyname(socket.gethostname())
    )
    return PeerOptions(args.peer_port, advertise, folder,
                       args.peer_server_name or f"accel-webhook.{args.namespace}.svc")


def annotation_writers(args: argparse.Namespace) -> tuple[str, ...] | None:
    """`--annotation-writer` values (None: the default), refused for other components."""
    if args.annotation_writer and args.component != "webhook":
        raise CliError(
            "--annotation-writer applies to `accel serve webhook` only (it answers pod UPDATE reviews)"
        )
    return tuple(args.annotation_writer) or None


def dev_identity_groups(args: argparse.Namespace) -> tuple[str, ...] | None:
    """`--dev-identity team:nlp[,GROUP...]` as groups; refused outside `accel serve api --snapshot`.

    Against a cluster it would hand every unauthenticated visitor a team's view, which is exactly
    what the token and proxy rules exist to prevent; on a snapshot nothing real is behind it.
    """
    if not args.dev_identity:
        return None
    if args.component != "api" or not args.snapshot:
        raise CliError(
            "--dev-identity is for local use of `accel serve api --snapshot FILE` only; against a cluster "
            "callers identify with a bearer token or through the trusted proxy"
        )
    groups = tuple(g.strip() for g in args.dev_identity.split(",") if g.strip())
    if not groups:
        raise CliError("--dev-identity: give one or more comma-separated groups, e.g. team:nlp")
    return groups


def _announce_dev_identity(groups: tuple[str, ...], state: ClusterState) -> None:
    """Say at start-up, in plain words on stderr and in the log, whom the page shows."""
    from api.identity import TEAM_GROUP_PREFIX

    named = [g[len(TEAM_GROUP_PREFIX):] for g in groups if g.startswith(TEAM_GROUP_PREFIX)]
    unknown = []
    try:
        policy = state.view().parsed.policy
        unknown = [t for t in named if policy.team(t) is None]
    except RuntimeError:
        pass  # no policy yet (ConfigMap from the snapshot still to come): nothing to check against
    print(
        f"accel: development identity: callers without a token are treated as {', '.join(groups)} (local "
        "use only)",
        file=sys.stderr,
    )
    if unknown:
        print(
            f"accel: warning: --dev-identity names team(s) {', '.join(unknown)} that the policy does not "
            "have; "
            "the page will show only what every team may use",
            file=sys.stderr,
        )
    log.warning("development identity in use", extra={"groups": list(groups), "unknown_teams": unknown})


def _refuse_invalid_policy(path: str, files: dict[str, str]) -> None:
    """A `--policy` directory never changes while the server runs: if it is invalid the server
    could never become ready, so say why now instead of serving 503s."""
    from accel.policy.loading import parse_policy
    from accel.policy.models import PolicyInvalid

    try:
        parse_policy(files, load_builtin_catalog())
    except PolicyInvalid as exc:
        raise CliError(
            f"policy {path} is invalid ({len(exc.errors)} error(s)):\n  "
            + "\n  ".join(str(e) for e in exc.errors)
        ) from exc


def _add_peer_listener(
    app: web.Application, args: argparse.Namespace, peers: PeerOptions, deps: ClusterDeps, metrics: Metrics
) -> None:
    """The webhook's peer listener and ledger leader election (webhook/peer.py), started with the app."""
    from serving.tls import ReloadingTLS
    from webhook.app import ADMITTER
    from webhook.peer import PeerService

    admitter = app[ADMITTER]
    if admitter.ledger is None or deps.leases is None:
        raise CliError("--peer-port needs the quota ledger and Leases (a cluster or --snapshot)")
    tls = ReloadingTLS(args.cert_dir, client_ca=peers.client_cert_dir / "ca.crt")
    service = PeerService(
        admitter, host=args.host, port=peers.port, advertise=peers.advertise, tls=tls,
        client_cert_dir=peers.client_cert_dir, server_name=peers.server_name, lease_store=deps.leases,
        metrics=metrics,
    )
    app.cleanup_ctx.append(service.cleanup_ctx)


async def _serve(args: argparse.Namespace) -> None:
    """Build everything inside the serving loop (the API client is bound to it), then serve."""
    import signal

    from serving.run import require_tls, serve
    from serving.tls import ReloadingTLS

    # TLS first: a webhook without certificates must fail before it loads or watches anything.
    client_ca, client_names = client_auth(args)
    dev_identity = dev_identity_groups(args)
    scrape_port = metrics_port(args)
    peers = peer_options(args)
    tls = ReloadingTLS(args.cert_dir, client_ca=client_ca) if args.cert_dir else None
    require_tls(args.component, tls, args.insecure_plaintext)
    policy_files = read_policy_files(Path(args.policy)) if args.policy else None
    if policy_files is not None:
        _refuse_invalid_policy(args.policy, policy_files)
    deps = (
        snapshot_cluster(args.snapshot, args.namespace)
        if args.snapshot
        else await real_cluster(args.kubeconfig, args.namespace)
    )
    try:
        metrics = Metrics()
        state = build_state(
            deps,
            namespace=args.namespace,
            policy_files=policy_files,
            metrics=metrics,
            app_name=args.component,
        )
        app = make_component_app(
            args.component, state, deps, metrics, client_names=client_names, dev_identity=dev_identity,
            annotation_writers=annotation_writers(args),
        )
        if peers is not None:
            _add_peer_listener(app, args, peers, deps, metrics)
        if dev_identity:
            _announce_dev_identity(dev_identity, state)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            app, host=args.host, port=args.port, tls=tls, stop=stop, allow_plaintext=args.insecure_plaintext,
            metrics_port=scrape_port,
            reuse_port=args.reuse_port,
        )
    finally:
        if deps.close is not None:
            await deps.close()
