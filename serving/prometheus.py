"""Read chargeback usage back from Prometheus (`api.prometheusUrl`): one instant query per counter.

`sum by (team, type) (increase(<counter>[<window>s]))` over every replica's series (each interval
is counted by exactly one replica, serving.chargeback). Failures raise `PrometheusError` with
what was asked and what came back; callers report it, never a traceback.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from accel.quota.chargeback import Usage

QUERY_TIMEOUT_S = 10.0


class PrometheusError(Exception):
    """Prometheus could not answer the usage queries."""


async def usage_from_prometheus(
    url: str, window_s: float, *, session: aiohttp.ClientSession | None = None
) -> dict[tuple[str, str], Usage]:
    """(team, type) -> GPU-seconds and cost over the last `window_s` seconds."""
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=QUERY_TIMEOUT_S))
    try:
        seconds = await _query(
            client, url, f"sum by (team, type) (increase(accel_gpu_seconds_total[{int(window_s)}s]))"
        )
        cost = await _query(
            client, url, f"sum by (team, type) (increase(accel_gpu_cost_total[{int(window_s)}s]))"
        )
    finally:
        if own:
            await client.close()
    return {key: Usage(value, cost.get(key, 0.0)) for key, value in seconds.items()}


async def _query(client: aiohttp.ClientSession, url: str, promql: str) -> dict[tuple[str, str], float]:
    endpoint = url.rstrip("/") + "/api/v1/query"
    try:
        async with client.get(endpoint, params={"query": promql}) as response:
            body: Any = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise PrometheusError(f"GET {endpoint} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        reason = body.get("error") if isinstance(body, dict) else str(body)[:200]
        raise PrometheusError(f"Prometheus refused {promql!r}: {reason}")
    found: dict[tuple[str, str], float] = {}
    for sample in (body.get("data") or {}).get("result") or []:
        metric, value = sample.get("metric") or {}, sample.get("value") or [0, "0"]
        try:
            found[(str(metric.get("team", "")), str(metric.get("type", "")))] = float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
    return found
