"""Issue 21 residual: /metrics on a serving port carries the per-team series (quota use, GPU-hours,
cost) to anyone who reaches that port: every user of the API, every peer of the extender.

With a metrics port (`accel serve --metrics-port N`, what the shipped Deployments run) the series
are served by a separate plain-HTTP listener, which a NetworkPolicy opens to Prometheus alone, and
/metrics on the serving port answers 404. Without one, /metrics stays where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from api.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.chargeback import ChargebackCounter
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.hostile.peer_fixtures import Pki, make_pki
from tests.integration.test_api import sample_inventory, sample_policy
from tests.integration.test_security_serve import free_port
from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
SERVE_API = [sys.executable, "-m", "cli.main", "serve", "api", "--snapshot", "examples/cluster.yaml",
             "--policy", "examples/policy", "--host", "127.0.0.1", "--insecure-plaintext"]  # fmt: skip


def team_series(text: str) -> bool:
    """Whether an exposition holds vision's GPU-seconds series."""
    return any(line.startswith("accel_gpu_seconds_total{") and 'team="vision"' in line
               for line in text.splitlines())  # fmt: skip


@contextlib.asynccontextmanager
async def api(tmp_path: Path, metrics_port: int | None) -> AsyncIterator[tuple[str, Pki]]:
    """The API over TLS whose chargeback counters hold one team's (vision's) GPU time."""
    pki = make_pki(tmp_path)
    parsed = sample_policy()
    state = ClusterState.static(parsed, sample_inventory(parsed))
    metrics = Metrics()
    app = make_app(state, metrics=metrics, token_reviewer=FakeCluster(), clock=ManualClock())
    counter = ChargebackCounter(state, FakeCluster(), metrics.registry, identity="hostile")
    counter.gpu_seconds.labels(team="vision", namespace="team-vision", type="nvidia-a100-80gb",
                               profile="a100-80gb").inc(3600)
    async with serving(app, tls=ReloadingTLS(tmp_path), metrics_port=metrics_port) as port:
        yield f"https://127.0.0.1:{port}", pki


async def get(url: str, pki: Pki | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=pki.context() if pki else False) as resp,
    ):
        return resp.status, await resp.text()


async def test_with_a_metrics_port_the_serving_port_carries_no_team_series(tmp_path: Path) -> None:
    scrape = free_port()
    async with api(tmp_path, scrape) as (base, pki):
        status, text = await get(f"{base}/metrics", pki)
        assert status == 404 and "vision" not in text and "metrics port" in text, (status, text)
        for probe in ("/healthz", "/readyz"):  # kubelet's probes stay on the serving port
            assert (await get(f"{base}{probe}", pki))[0] == 200, probe
        status, text = await get(f"http://127.0.0.1:{scrape}/metrics")
        assert status == 200 and team_series(text)
        assert 'accel_http_requests_total{app="api",code="404",handler="/metrics"} 1.0' in text
        assert (await get(f"http://127.0.0.1:{scrape}/api/usage"))[0] == 404  # serves metrics only


async def test_without_a_metrics_port_metrics_stay_on_the_serving_port(tmp_path: Path) -> None:
    async with api(tmp_path, None) as (base, pki):
        status, text = await get(f"{base}/metrics", pki)
        assert status == 200 and team_series(text)


@contextlib.contextmanager
def api_process(*extra: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*SERVE_API, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        yield proc
    finally:
        stop_process(proc, grace_s=30)


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "accel serve api exited"
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)  # polling a real external process, with a deadline
    raise AssertionError("accel serve api never became ready")


async def test_accel_serve_metrics_port_moves_metrics_off_the_serving_port() -> None:
    port, scrape = free_port(), free_port()
    with api_process("--port", str(port), "--metrics-port", str(scrape)) as proc:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{port}", proc)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 404
            async with session.get(f"http://127.0.0.1:{scrape}/metrics") as resp:
                assert resp.status == 200 and "# HELP accel_gpu_seconds_total" in await resp.text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--port", "9443", "--metrics-port", "9443"], "--metrics-port 9443 is the serving port"),
        (["--port", "9443", "--metrics-port", "70000"], "--metrics-port 70000: give a TCP port"),
    ],
)
def test_a_bad_metrics_port_is_refused_with_a_reason(extra: list[str], message: str) -> None:
    out = subprocess.run([*SERVE_API, *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_taken_port_is_an_error_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        out = subprocess.run([*SERVE_API, "--port", "0", "--metrics-port", str(busy)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot listen for metrics on 127.0.0.1:{busy}" in out.stderr and "--metrics-port" in out.stderr
