"""The demo's three servers in one process: webhook, extender and API over real HTTPS on 127.0.0.1.

Wiring is `cli.serve`'s, reused (not copied): `snapshot_cluster` loads the sample cluster into ONE
in-memory API server (`kube.fake.FakeCluster`) that all three apps share as quota-ledger store,
binder, token reviewer and watch source; `build_state` + `make_component_app` build each app
with its own `ClusterState` and watches, exactly like `accel serve --snapshot`. Certificates come
from the `certs` package (a fresh CA, a serving pair for 127.0.0.1/localhost and kube-scheduler's
client certificate in a temp dir); clients trust that CA only, and the demo's scheduler calls the
extender with the client certificate, as the extender requires.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from certs.issue import create_ca, create_client_cert, create_serving_cert, serving_sans
from certs.state import CertState, write_atomic, write_cert_dir
from cli.serve import COMPONENTS, DEFAULT_SCHEDULER_CLIENT, build_state, make_component_app, snapshot_cluster
from cli.state import DEFAULT_NAMESPACE, CliError, read_policy_files
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serve
from serving.tls import ReloadingTLS

HOST = "127.0.0.1"
READY_DEADLINE_S = 30.0


@dataclass
class Servers:
    """What the driver needs: the shared API server, each app's URL and state, the client TLS."""

    cluster: FakeCluster
    urls: dict[str, str]
    states: dict[str, ClusterState]
    client_ssl: ssl.SSLContext


SCHEDULER_CERT, SCHEDULER_KEY = "scheduler-client.crt", "scheduler-client.key"


def make_certificates(cert_dir: Path) -> bytes:
    """A new CA, a serving pair valid for 127.0.0.1/localhost and the scheduler's client pair
    (SCHEDULER_CERT/SCHEDULER_KEY) in `cert_dir`; returns the CA PEM."""
    now = datetime.now(UTC)  # certificates must be valid for the real TLS stack
    ca = create_ca(now=now, common_name="accel-demo-ca")
    sans = serving_sans(
        ["accel-webhook", "accel-extender", "accel-api"],
        DEFAULT_NAMESPACE,
        extra_dns=["localhost"],
        ips=[HOST],
    )
    write_cert_dir(
        cert_dir, CertState(ca=ca, bundle=ca.cert_pem, serving=create_serving_cert(ca, sans=sans, now=now))
    )
    client = create_client_cert(ca, common_name=DEFAULT_SCHEDULER_CLIENT, now=now)
    write_atomic(cert_dir / SCHEDULER_KEY, client.key_pem, mode=0o600)
    write_atomic(cert_dir / SCHEDULER_CERT, client.cert_pem)
    return ca.cert_pem


async def _wait_ready(session: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    """Poll every `/readyz` until 200, with a deadline (these are real servers)."""
    deadline = time.monotonic() + READY_DEADLINE_S
    pending = dict(urls)
    last = ""
    while pending:
        for name, url in list(pending.items()):
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        del pending[name]
                        continue
                    last = f"{name}: HTTP {resp.status} {await resp.text()}"
            except aiohttp.ClientError as exc:
                last = f"{name}: {exc}"
        if pending and time.monotonic() > deadline:
            raise CliError(
                f"demo servers not ready after {READY_DEADLINE_S:.0f}s: {', '.join(pending)} ({last})"
            )
        if pending:
            await asyncio.sleep(0.02)


async def _start(
    component: str, app: web.Application, cert_dir: Path, stop: asyncio.Event
) -> tuple[asyncio.Task[None], int]:
    loop = asyncio.get_running_loop()
    port: asyncio.Future[int] = loop.create_future()
    task = asyncio.create_task(
        serve(
            app,
            host=HOST,
            port=0,
            tls=ReloadingTLS(cert_dir, client_ca=cert_dir / "ca.crt"),
            stop=stop,
            shutdown_timeout=5.0,
            on_started=port.set_result,
        ),
        name=f"demo-{component}",
    )
    waiters: list[asyncio.Future[object]] = [task, port]  # type: ignore[list-item]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not port.done():
        task.result()  # re-raises why the server did not start
        raise CliError(f"demo {component} server stopped before listening")
    return task, port.result()


@asynccontextmanager
async def run_servers(
    *, policy_dir: Path, snapshot: Path, workdir: Path, namespace: str = DEFAULT_NAMESPACE
) -> AsyncIterator[Servers]:
    """Start the three apps on random free ports; stop them (gracefully) on exit."""
    files = read_policy_files(policy_dir)
    deps = snapshot_cluster(str(snapshot), namespace)
    if not isinstance(deps.source, FakeCluster):
        raise CliError("demo needs the in-memory API server")
    cert_dir = workdir / "certs"
    ca_pem = make_certificates(cert_dir)
    client_ssl = ssl.create_default_context(cadata=ca_pem.decode())
    # The demo's one client plays kube-scheduler too: it presents the scheduler's certificate.
    client_ssl.load_cert_chain(cert_dir / SCHEDULER_CERT, cert_dir / SCHEDULER_KEY)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    urls: dict[str, str] = {}
    states: dict[str, ClusterState] = {}
    try:
        for component in COMPONENTS:
            metrics = Metrics()
            # Rebuild on every change, not at most every 0.2 s: the demo changes the cluster a few
            # milliseconds apart, and with the production debounce runs would not reproduce.
            state = build_state(
                deps,
                namespace=namespace,
                policy_files=files,
                metrics=metrics,
                app_name=component,
                min_rebuild_interval_s=0.0,
            )
            app = make_component_app(component, state, deps, metrics)
            task, port = await _start(component, app, cert_dir, stop)
            tasks.append(task)
            urls[component], states[component] = f"https://{HOST}:{port}", state
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
            await _wait_ready(session, urls)
        yield Servers(cluster=deps.source, urls=urls, states=states, client_ssl=client_ssl)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
