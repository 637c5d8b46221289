"""Issue 21, redaction: with api.redactNodeNames no real node name, hostname or topology value
leaves the API (nodes, drafts, estimates, errors, profiles, usage, metrics), ids are keyed
(HMAC, not a hash anyone can recompute) and lookups by real name or selector are refused alike
whether the node exists or not. Real TLS on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.app import make_app
from api.redaction import Redactor
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.integration.test_api import sample_inventory, sample_policy
from tests.integration.tls_fixtures import client_context, make_cert_dir

KEY = b"k" * 32


class Api:
    def __init__(self, base: str, ctx: ssl.SSLContext, session: aiohttp.ClientSession) -> None:
        self.base, self.ctx, self.session = base, ctx, session
        self.seen: list[str] = []  # every body answered, for the leak check

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body, ssl=self.ctx) as resp:
            text = await resp.text()
            self.seen.append(f"{method} {path} -> {resp.status}: {text}")
            return resp.status, (await resp.json() if resp.content_type == "application/json" else text)


@asynccontextmanager
async def api(tmp_path: Path, *, key: bytes | None = KEY) -> AsyncIterator[tuple[Api, set[str]]]:
    """The API with redaction on; yields it and every secret string (names, hostnames, topology values)."""
    certs = make_cert_dir(tmp_path)
    settings = "api: {redactNodeNames: true"
    if key is not None:
        (tmp_path / "key").write_bytes(key)
        settings += f", redactionKeyFile: {tmp_path / 'key'}"
    parsed = sample_policy(settings + "}")
    inventory = sample_inventory(parsed)
    secrets = {n.name for n in inventory.nodes} | {v for n in inventory.nodes for v in (
        n.labels.get("kubernetes.io/hostname"), n.accelerators.topology.zone,
        n.accelerators.topology.spine, n.accelerators.topology.leaf) if v}
    app = make_app(
        ClusterState.static(parsed, inventory),
        metrics=Metrics(),
        token_reviewer=FakeCluster(),
        clock=ManualClock(),
    )
    async with serving(app, tls=ReloadingTLS(tmp_path)) as port, aiohttp.ClientSession() as session:
        yield Api(f"https://127.0.0.1:{port}", client_context(certs.bundle), session), secrets


async def test_no_real_name_or_topology_value_in_any_answer(tmp_path: Path) -> None:
    async with api(tmp_path) as (srv, secrets):
        for sort in ("name", "zone", "-free", "type"):
            status, nodes = await srv.call("GET", f"/api/nodes?sort={sort}")
            assert status == 200 and nodes["redacted"] is True
        ids = [n["name"] for n in nodes["nodes"]]
        assert all(n["labels"] == {} for n in nodes["nodes"])
        assert any(n["zone"] and n["zone"].startswith("zone:") for n in nodes["nodes"])
        # One node: every label (hostname, zone, leaf) is shared by "all" selected nodes.
        status, draft = await srv.call("POST", "/api/hardware-profiles/draft", {"nodes": ids[:1]})
        assert status == 200 and draft["nodes"] == ids[:1] and "nodeSelector" not in draft["profile"]
        assert "nodeSelector" not in draft["yaml"] and draft["sharedLabels"] == {}
        assert any("node labels left out" in w for w in draft["warnings"])
        await srv.call("POST", "/api/hardware-profiles/draft", {"nodes": ids[:2]})
        await srv.call("POST", "/api/hardware-profiles/draft", {"nodes": ids})  # mixed types: warnings
        status, _ = await srv.call(
            "POST", "/api/hardware-profiles/draft", {"nodes": [i for i in ids if "cpu" in i] or ids[-1:]}
        )
        await srv.call("POST", "/api/estimates", {"model": "llama-3-70b", "tokens": 2e12})
        await srv.call("POST", "/api/estimates", {"model": "gpu-h100-01", "tokens": "x"})
        for path in (
            "/api/hardware-profiles",
            "/api/hardware-profiles/gpu-any",
            "/api/hardware-profiles/nope",
            "/api/usage",
            "/api/accelerators",
            "/api/openapi.json",
            "/nodes/gpu-h100-01",
            "/metrics",
        ):
            await srv.call("GET", path)
        answers = "\n".join(srv.seen)
    assert "GET /metrics -> 200" in answers and "POST /api/estimates -> 200" in answers
    leaked = sorted(s for s in secrets if s in answers.replace("/nodes/gpu-h100-01", ""))
    assert not leaked, f"redacted answers show {leaked}"


@pytest.mark.parametrize("body", [
    {"nodes": ["gpu-h100-01"]},  # a real name
    {"nodes": ["gpu-h100-99"]},  # a guess that is wrong
    {"nodes": ["node-" + hashlib.sha256(b"gpu-h100-01").hexdigest()[:10]]},  # the old unkeyed id
], ids=["real-name", "wrong-guess", "unkeyed-hash"])
async def test_lookup_by_name_is_refused_the_same_whether_the_node_exists(
    tmp_path: Path, body: dict[str, Any]
) -> None:
    async with api(tmp_path) as (srv, _):
        status, answer = await srv.call("POST", "/api/hardware-profiles/draft", body)
    assert status == 400
    assert answer == {
        "error": "nodes: 1 entry is not a node id; while node names are redacted, select nodes by the ids "
        "GET /api/nodes shows (node:...)"
    }


@pytest.mark.parametrize("selector", ["kubernetes.io/hostname=gpu-h100-01", "kubernetes.io/hostname=gpu-nope",
                                      "topology.kubernetes.io/zone=eu-west-1a"])
async def test_selectors_are_refused_while_redacting(tmp_path: Path, selector: str) -> None:
    async with api(tmp_path) as (srv, _):
        status, answer = await srv.call("POST", "/api/hardware-profiles/draft", {"selector": selector})
    assert status == 400 and "refused while node names are redacted" in answer["error"]


async def test_ids_are_keyed(tmp_path: Path) -> None:
    async with api(tmp_path / "a") as (srv, _):
        _, nodes = await srv.call("GET", "/api/nodes?sort=name")
    ids = {n["name"] for n in nodes["nodes"]}
    assert Redactor(KEY).node("gpu-h100-01") in ids
    assert not any(hashlib.sha256(b"gpu-h100-01").hexdigest()[:10] in i for i in ids)
    async with api(tmp_path / "b", key=b"another key of 32 bytes........!") as (srv, _):
        _, other = await srv.call("GET", "/api/nodes?sort=name")
    assert ids.isdisjoint({n["name"] for n in other["nodes"]})


async def test_without_a_key_file_a_random_key_is_used_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.redaction")
    async with api(tmp_path / "a", key=None) as (srv, _):
        _, first = await srv.call("GET", "/api/nodes")
    async with api(tmp_path / "b", key=None) as (srv, _):
        _, second = await srv.call("GET", "/api/nodes")
    assert {n["name"] for n in first["nodes"]}.isdisjoint({n["name"] for n in second["nodes"]})
    assert "will change on restart" in caplog.text


async def test_a_short_key_file_is_refused_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="api.redaction")
    async with api(tmp_path, key=b"short") as (srv, secrets):
        status, nodes = await srv.call("GET", "/api/nodes")
    assert status == 200 and not {n["name"] for n in nodes["nodes"]} & secrets
    assert "cannot use api.redactionKeyFile" in caplog.text
