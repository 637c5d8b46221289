"""A real server process for the SIGTERM test: `python -m tests.integration.slow_server CERT_DIR`.

Prints `port N` once listening and `slow-started` when /slow begins; /slow then takes 1.5 s, long
enough for the test to send SIGTERM while it is in flight.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from serving.app import make_base_app
from serving.metrics import Metrics
from serving.run import serve
from serving.tls import ReloadingTLS

SLOW_SECONDS = 1.5


async def main(cert_dir: str) -> None:
    app = make_base_app(
        name="webhook",
        metrics=Metrics(),
        max_body_bytes=1 << 20,
        max_concurrency=8,
        ready=lambda: (True, "ok"),
    )

    async def slow(_request: web.Request) -> web.Response:
        print("slow-started", flush=True)
        await asyncio.sleep(SLOW_SECONDS)  # the in-flight work a graceful shutdown must let finish
        return web.json_response({"slow": "done"})

    app.router.add_get("/slow", slow)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await serve(
        app,
        host="127.0.0.1",
        port=0,
        tls=ReloadingTLS(cert_dir),
        stop=stop,
        shutdown_timeout=10,
        on_started=lambda port: print(f"port {port}", flush=True),
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
