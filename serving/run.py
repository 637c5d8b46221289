"""Run an app over HTTPS with graceful shutdown.

`serve(...)` is the async core (tests drive it with a `stop` event); `run_https(...)` wraps it in
`asyncio.run` with SIGTERM/SIGINT setting that event. On stop: the listening socket closes (new
connections are refused), in-flight requests get up to `shutdown_timeout` seconds to finish (counted
by `serving.app.InFlight` while connections still read, so a request whose body is still arriving
completes too; aiohttp's own shutdown stops reading first), then connections close, the app's
cleanup contexts run (the TLS poller among them) and the call returns.

With `metrics_port` the app's metrics are served by a second, plain-HTTP listener on that port
(`serving.app.make_metrics_app`; 0 picks a free one, logged) and the app's own /metrics answers
404: the serving port then carries no per-team series. It starts and stops with the main one.

With `reuse_port` the listening socket sets SO_REUSEPORT: several processes (each a whole server:
its own informers, quota-ledger writer and metrics) listen on one port and the kernel spreads new
connections over them, as a Service spreads them over pods (`accel serve --reuse-port`).

Plaintext is refused unless `allow_plaintext=True` (the CLI's `--insecure-plaintext`), and always for an app
named "webhook": the API
server only calls webhooks over HTTPS, so a plaintext webhook is a misconfiguration, not an option.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from serving.app import APP_NAME, INFLIGHT, METRICS, METRICS_ELSEWHERE, make_metrics_app
from serving.tls import ReloadingTLS

log = logging.getLogger(__name__)

TLS_REQUIRED_APPS: frozenset[str] = frozenset({"webhook"})


class PlaintextRefused(ValueError):
    """Asked to serve without TLS where that is not allowed."""


class CannotListen(OSError):
    """A listener could not bind its address (the port is taken, the address is not this host's)."""


async def _listen(site: web.TCPSite, host: str, port: int, what: str, flag: str) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise CannotListen(
            f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}; "
            f"stop what uses that port or choose another with {flag}"
        ) from exc


def require_tls(name: str, tls: ReloadingTLS | None, allow_plaintext: bool) -> None:
    """Raise PlaintextRefused when `name` would be served without TLS where that is not allowed."""
    if tls is None and (name in TLS_REQUIRED_APPS or not allow_plaintext):
        hint = (
            "the API server only calls webhooks over HTTPS"
            if name in TLS_REQUIRED_APPS
            else "or, for local use only, pass --insecure-plaintext"
        )
        raise PlaintextRefused(
            f"refusing to serve {name!r} without TLS: create a certificate with "
            f"`accel certs create --local --service accel-{name} --out-dir DIR`, then pass --cert-dir DIR; "
            f"{hint}"
        )


def _check_tls(app: web.Application, tls: ReloadingTLS | None, allow_plaintext: bool) -> str:
    name: str = app.get(APP_NAME, "app")
    require_tls(name, tls, allow_plaintext)
    return name


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    tls: ReloadingTLS | None,
    stop: asyncio.Event,
    shutdown_timeout: float = 30.0,
    allow_plaintext: bool = False,
    on_started: Callable[[int], None] | None = None,
    metrics_port: int | None = None,
    on_metrics_started: Callable[[int], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until `stop` is set, then drain and return. `on_started(port)` gets the bound port;
    with `metrics_port`, `on_metrics_started(port)` the metrics listener's (module docstring)."""
    name = _check_tls(app, tls, allow_plaintext)
    metrics = app.get(METRICS)
    if tls is not None:
        app.cleanup_ctx.append(tls.cleanup_ctx)
        if metrics is not None:
            metrics.tls_cert_expiry.labels(app=name).set_function(tls.not_after_timestamp)
    exporter: web.AppRunner | None = None
    if metrics_port is not None:
        if metrics is None:
            raise ValueError(f"{name!r} has no metrics to serve on a metrics port")
        app[METRICS_ELSEWHERE] = True
        exporter = web.AppRunner(make_metrics_app(metrics), handle_signals=False, access_log=None)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    try:
        ssl_context = tls.context if tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port or None)
        await _listen(site, host, port, name, "--port")
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("serving", extra={"app": name, "host": host, "port": bound, "tls": tls is not None})
        if exporter is not None and metrics_port is not None:
            await exporter.setup()
            await _listen(web.TCPSite(exporter, host, metrics_port), host, metrics_port, "metrics",
                          "--metrics-port")
            scraped = exporter.addresses[0][1] if exporter.addresses else metrics_port
            log.info("serving metrics", extra={"app": name, "host": host, "port": scraped, "tls": False})
            if on_metrics_started is not None:
                on_metrics_started(scraped)
        if on_started is not None:
            on_started(bound)
        await stop.wait()
        log.info(
            "shutting down: draining in-flight requests", extra={"app": name, "timeout": shutdown_timeout}
        )
        await _drain(app, runner, shutdown_timeout)
    finally:
        try:
            await runner.cleanup()
        finally:
            if exporter is not None:
                await exporter.cleanup()  # last: Prometheus may scrape the drain
    log.info("stopped", extra={"app": name})


async def _drain(app: web.Application, runner: web.AppRunner, timeout: float) -> None:
    """Close the listeners, then wait (bounded) until no request is inside the handler chain."""
    for site in list(runner.sites):
        await site.stop()
    tracker = app.get(INFLIGHT)
    if tracker is None:
        return
    try:
        await asyncio.wait_for(tracker.wait_idle(), timeout)
    except TimeoutError:
        log.warning("drain timed out with requests in flight", extra={"in_flight": tracker.count})


@contextlib.asynccontextmanager
async def serving(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ReloadingTLS | None,
    shutdown_timeout: float = 5.0,
    allow_plaintext: bool = False,
    metrics_port: int | None = None,
    reuse_port: bool = False,
) -> AsyncIterator[int]:
    """Serve `app` for the duration of the block and yield the bound port (tests, benchmarks);
    `metrics_port` as in `serve` (give a free port: the block yields only the serving one).

    If the server fails before it listens (bad TLS, plaintext refused, port taken) its own error
    is raised here instead of a hang; leaving the block drains it like SIGTERM does.
    """
    stop, started = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, host=host, port=port, tls=tls, stop=stop, shutdown_timeout=shutdown_timeout,
              allow_plaintext=allow_plaintext, on_started=started.set_result, metrics_port=metrics_port,
              reuse_port=reuse_port)
    )
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield started.result()
    finally:
        stop.set()
        await task


def run_https(
    app: web.Application,
    *,
    host: str,
    port: int,
    tls: ReloadingTLS | None,
    shutdown_timeout: float = 30.0,
    allow_plaintext: bool = False,
) -> None:
    """Block serving `app` until SIGTERM/SIGINT, then shut down gracefully (see module docstring)."""
    _check_tls(app, tls, allow_plaintext)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            app,
            host=host,
            port=port,
            tls=tls,
            stop=stop,
            shutdown_timeout=shutdown_timeout,
            allow_plaintext=allow_plaintext,
        )

    asyncio.run(main())
