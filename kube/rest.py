"""JSON-over-REST transport on a kubernetes_asyncio `ApiClient`: plain dicts in and out.

We use the ApiClient for what it is good at — kubeconfig/in-cluster auth, token refresh, TLS, the
connection pool — and skip its model classes (`_preload_content=False`), because the core parses
the same `kubectl get -o json` dicts from files, the fake cluster and the API server alike.
All failures leave here as `kube.errors` types: non-2xx via `error_for_status`, transport
problems and timeouts as `Unreachable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

from kube.errors import KubeError, Unreachable, error_for_status
from kube.protocol import JsonObject

Query = list[tuple[str, str]]
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class RestTransport:
    """`request` for ordinary calls, `stream` for watch responses (one JSON object per line)."""

    def __init__(self, api_client: ApiClient, *, request_timeout_s: float = 30.0) -> None:
        self.api_client = api_client
        self.request_timeout_s = request_timeout_s

    async def request(
        self, method: str, path: str, *, query: Query | None = None, body: JsonObject | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        """Send one request; return the decoded JSON body of a 2xx answer, else raise a typed error.

        `content_type` names the patch flavour for PATCH (e.g. application/merge-patch+json)."""
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        response = await self._send(method, path, query, body, timeout, content_type)
        try:
            raw = await response.read()
        except _TRANSPORT_ERRORS as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise error_for_status(response.status, _status_message(raw, response.reason))
        decoded: JsonObject = decode_json(raw) if raw else {}
        return decoded

    async def stream(self, path: str, *, query: Query, read_timeout_s: float) -> AsyncIterator[JsonObject]:
        """GET a streaming response and yield each JSON line; `read_timeout_s` bounds silence."""
        timeout = aiohttp.ClientTimeout(total=None, connect=self.request_timeout_s, sock_read=read_timeout_s)
        response = await self._send("GET", path, query, None, timeout)
        try:
            if response.status != 200:
                raise error_for_status(
                    response.status, _status_message(await response.read(), response.reason)
                )
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield decode_json(line)
        except _TRANSPORT_ERRORS as exc:
            raise Unreachable(f"watch {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release()

    async def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: JsonObject | None,
        timeout: aiohttp.ClientTimeout,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self.api_client.call_api(
                path, method, query_params=query or [], body=body,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
            )
        except KubeError:
            raise
        except _TRANSPORT_ERRORS as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return response


# 19 digits in a row: the shortest integer outside 64 bits (-9223372036854775809) has them, and any
# with fewer fits. orjson turns such an integer into a float without a word; the stdlib keeps it exact.
# Found by mapping every digit to "0" and anything else to "x" (C speed, ~1 us for a pod event; a
# regex [0-9]{19} costs 18 us, more than the decode it guards).
_DIGITS_AS_ZERO = bytes(b"0"[0] if chr(code).isdigit() and code < 128 else b"x"[0] for code in range(256))
_LONG_DIGITS = b"0" * 19


def decode_json(raw: bytes) -> Any:
    """One JSON document from the API server, exactly as `json.loads` decodes it. orjson first: every
    watch event of every pod in the cluster passes here, in every server process (the stdlib decoder
    was a tenth of a busy webhook replica's CPU). The stdlib for what orjson would get wrong or refuses
    and JSON allows: a run of 19 digits anywhere (an integer beyond 64 bits, which orjson would round
    to a float; a run inside a string only costs the slower decoder) and escaped lone surrogates.
    Invalid JSON raises ValueError either way."""
    if _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _status_message(raw: bytes, reason: Any) -> str:
    """The `message` of a `v1 Status` body when there is one, else the HTTP reason phrase."""
    try:
        status = decode_json(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500] or str(reason)
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return str(reason)
