"""The hardware-profile API over real HTTPS on 127.0.0.1 (api/app.py), against the sample cluster.

Identity comes from the in-memory FakeCluster's TokenReview; state from `ClusterState.static`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from accel.capacity.inventory import Inventory, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from api.app import ROUTES, make_app
from api.redaction import Redactor
from kube.errors import Unreachable
from kube.fake import FakeCluster
from kube.snapshot import load_snapshot
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serve
from serving.tls import ReloadingTLS
from tests.integration.tls_fixtures import client_context, make_cert_dir

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "examples" / "policy"
SNAPSHOT = ROOT / "examples" / "cluster.yaml"
NLP_PROFILES = {"premium-h200", "large-any", "a100-80gb", "inference-mig", "notebook-shared", "gpu-any"}


def sample_policy(settings_extra: str = "") -> ParsedPolicy:
    files = {p.name: p.read_text(encoding="utf-8") for p in POLICY_DIR.glob("*.yaml")}
    files["settings.yaml"] += "\n" + settings_extra
    return parse_policy(files, load_builtin_catalog())


def sample_inventory(parsed: ParsedPolicy, *, drop_pods: bool = False) -> Inventory:
    snap = load_snapshot(SNAPSHOT)
    pods = [] if drop_pods else snap.of("pods")
    return build_inventory(
        snap.of("nodes"), pods, snap.of("namespaces"), catalog=parsed.catalog, policy=parsed.policy
    )


@dataclass
class Server:
    base: str
    session: aiohttp.ClientSession
    ssl: Any
    state: ClusterState
    cluster: FakeCluster
    clock: ManualClock

    async def get(
        self, path: str, *, token: str | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        all_headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        async with self.session.get(self.base + path, ssl=self.ssl, headers=all_headers) as resp:
            return resp.status, await (
                resp.json() if resp.content_type == "application/json" else resp.text()
            )

    async def post(self, path: str, body: Any, *, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(self.base + path, json=body, ssl=self.ssl, headers=headers) as resp:
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def api_server(
    tmp_path: Path, parsed: ParsedPolicy | None = None, *, dev_identity: tuple[str, ...] | None = None
) -> AsyncIterator[Server]:
    """The API app served over HTTPS on an ephemeral 127.0.0.1 port."""
    certs = make_cert_dir(tmp_path)
    parsed = parsed or sample_policy()
    state = ClusterState.static(parsed, sample_inventory(parsed))
    cluster, clock = FakeCluster(), ManualClock()
    cluster.add_token("nlp-token", "alice", ("team:nlp", "system:authenticated"))
    cluster.add_token(
        "sa-token",
        "system:serviceaccount:team-vision:trainer",
        ("system:serviceaccounts", "system:serviceaccounts:team-vision"),
    )
    app = make_app(state, metrics=Metrics(), token_reviewer=cluster, clock=clock, dev_identity=dev_identity)
    stop, started = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, host="127.0.0.1", port=0, tls=ReloadingTLS(tmp_path), stop=stop,
                                     shutdown_timeout=5, on_started=started.set_result))
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        async with aiohttp.ClientSession() as session:
            yield Server(
                f"https://127.0.0.1:{started.result()}",
                session,
                client_context(certs.bundle),
                state,
                cluster,
                clock,
            )
    finally:
        stop.set()
        await task


def _names(body: Mapping[str, Any]) -> set[str]:
    return {p["name"] for p in body["profiles"]}


async def test_profiles_visible_by_identity(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        status, anonymous = await srv.get("/api/hardware-profiles")
        assert status == 200 and _names(anonymous) == {"notebook-shared", "gpu-any"}
        assert anonymous["observedAt"].endswith("Z") and anonymous["stale"] is False
        _, nlp = await srv.get("/api/hardware-profiles", token="nlp-token")
        assert _names(nlp) == NLP_PROFILES
        _, vision = await srv.get("/api/hardware-profiles", token="sa-token")
        assert _names(vision) == {"a100-80gb", "legacy-v100", "notebook-shared", "inference-mig", "gpu-any"}
        status, body = await srv.get("/api/hardware-profiles", token="forged")
        assert status == 401 and "TokenReview" in body["error"]


async def test_token_reviews_are_cached_and_outages_are_503(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        assert (await srv.get("/api/hardware-profiles", token="nlp-token"))[0] == 200
        srv.cluster.fail_next("tokenreviews", Unreachable("down"))
        assert (await srv.get("/api/hardware-profiles", token="nlp-token"))[0] == 200  # cached answer
        srv.clock.advance(61)
        status, body = await srv.get("/api/hardware-profiles", token="nlp-token")
        assert status == 503 and "retry" in body["error"]


async def test_trusted_proxy_header_only_when_configured(tmp_path: Path) -> None:
    groups = {"X-Forwarded-Groups": "team:research, devs"}
    async with api_server(tmp_path) as srv:
        _, ignored = await srv.get("/api/hardware-profiles", headers=groups)
        assert _names(ignored) == {"notebook-shared", "gpu-any"}
    # This client connects from 127.0.0.1, the proof `loopback` asks for (a sidecar proxy);
    # tests/hostile/test_api_peers.py covers the client-certificate proof and spoofing.
    loopback = "api: {trustedProxyHeader: X-Forwarded-Groups, trustedProxyFrom: loopback}"
    async with api_server(tmp_path, sample_policy(loopback)) as srv:
        _, research = await srv.get("/api/hardware-profiles", headers=groups)
        assert _names(research) == {"large-any", "amd-mi300x", "notebook-shared", "gpu-any"}


async def test_profile_item_shape_and_404(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        status, item = await srv.get("/api/hardware-profiles/premium-h200", token="nlp-token")
        assert status == 200
        assert item["acceleratorType"] == "nvidia-h200-141gb" and item["memory"] == "141GB"
        assert item["displayType"] == "NVIDIA H200 141GB" and item["architecture"] == "hopper"
        assert item["totalGpus"] == 16 and isinstance(item["available"], bool) and item["pricePerGpuHour"] > 0
        status, body = await srv.get("/api/hardware-profiles/premium-h200")  # hidden from anonymous callers
        assert status == 404 and "unknown hardware profile" in body["error"]


async def test_profile_list_follows_state_generation(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        _, before = await srv.get("/api/hardware-profiles/gpu-any")
        parsed = srv.state.view().parsed
        srv.state.update_static(inventory=sample_inventory(parsed, drop_pods=True))
        _, after = await srv.get("/api/hardware-profiles/gpu-any")
        assert after["availableGpus"] > before["availableGpus"]
        assert after["availableGpus"] == after["totalGpus"]


async def test_whoami_and_the_local_dev_identity(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        assert (await srv.get("/api/whoami"))[1]["anonymous"] is True
        status, who = await srv.get("/api/whoami", token="nlp-token")
        assert (
            status == 200
            and who["teams"] == ["nlp"]
            and who["username"] == "alice"
            and who["devIdentity"] is False
        )
    async with api_server(tmp_path, dev_identity=("team:nlp",)) as srv:
        status, who = await srv.get("/api/whoami")
        assert (who["anonymous"], who["teams"], who["devIdentity"]) == (False, ["nlp"], True)
        assert (
            len(_names((await srv.get("/api/hardware-profiles"))[1])) == 6
        )  # what nlp sees, not anonymous's 2
        status, who = await srv.get("/api/whoami", token="sa-token")  # a real token still wins
        assert who["teams"] == ["vision"] and who["devIdentity"] is False


async def test_nodes_filter_sort_and_errors(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        status, body = await srv.get("/api/nodes?type=nvidia-h100-80gb&sort=-free")
        assert status == 200 and body["count"] == 5
        assert {n["type"] for n in body["nodes"]} == {"nvidia-h100-80gb"}
        frees = [n["free"] for n in body["nodes"]]
        assert frees == sorted(frees, reverse=True)
        assert "memoryGb" in body["nodes"][0] and body["nodes"][0]["labels"]
        status, body = await srv.get("/api/nodes?sort=price")
        assert status == 400 and "choose one of" in body["error"]
        status, body = await srv.get("/api/nodes?type=nvidia-h100")  # as `accel nodes --type` rejects it
        assert status == 400 and "did you mean nvidia-h100-80gb or nvidia-h100-94gb" in body["error"]
        assert "known: amd-mi210-64gb" in body["error"] and body["error"].endswith("mixed")


async def test_redaction_hides_names_and_labels_but_drafts_still_work(tmp_path: Path) -> None:
    key = tmp_path / "redaction.key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    redact_name = Redactor(b"0123456789abcdef0123456789abcdef").node
    settings = f"api: {{redactNodeNames: true, redactionKeyFile: {key}}}"
    async with api_server(tmp_path, sample_policy(settings)) as srv:
        _, body = await srv.get("/api/nodes?type=nvidia-h100-80gb")
        names = [n["name"] for n in body["nodes"]]
        assert redact_name("gpu-h100-01") in names and not any(n.startswith("gpu-") for n in names)
        assert all(n["labels"] == {} for n in body["nodes"]) and body["redacted"] is True
        status, draft = await srv.post(
            "/api/hardware-profiles/draft", {"nodes": [redact_name("gpu-h100-01")]}
        )
        assert status == 200 and draft["nodes"] == [redact_name("gpu-h100-01")]
        assert all("gpu-h100-0" not in w for w in draft["warnings"])


@pytest.mark.parametrize(
    ("body", "status", "check"),
    [
        pytest.param(
            {"nodes": ["gpu-h200-01", "gpu-h200-02"], "name": "h200-pool"},
            200,
            "name: h200-pool",
            id="by-names",
        ),
        pytest.param(
            {"selector": "nvidia.com/gpu.product=NVIDIA-H200"}, 200, "nvidia-h200-141gb", id="by-selector"
        ),
        pytest.param({}, 400, "select nodes", id="nothing-selected"),
        pytest.param({"nodes": ["nope"]}, 400, "unknown node", id="unknown-node"),
        pytest.param({"nodes": "gpu-h200-01"}, 400, "nodes", id="nodes-not-a-list"),
    ],
)
async def test_draft(tmp_path: Path, body: dict[str, Any], status: int, check: str) -> None:
    async with api_server(tmp_path) as srv:
        got_status, got = await srv.post("/api/hardware-profiles/draft", body)
        assert got_status == status
        assert check in (got["yaml"] if status == 200 else got["error"])


async def test_estimates_rank_visible_profiles_and_report_errors(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        status, body = await srv.post(
            "/api/estimates", {"model": "llama-3-70b", "tokens": 2e12, "gpus": 64}, token="nlp-token"
        )
        assert status == 200
        assert {e["profile"] for e in body["estimates"]} == NLP_PROFILES
        ranked = [e for e in body["estimates"] if e["rank"]]
        assert ranked and body["best"] == ranked[0]["profile"]
        assert body["assumptions"]["mfu"] == 0.4 and body["assumptions"]["rules"]
        status, body = await srv.post("/api/estimates", {"params": -1, "tokens": 0})
        assert status == 400 and {e["field"] for e in body["errors"]} == {"params", "tokens"}
        status, body = await srv.post(
            "/api/estimates", {"params": 1e9, "tokens": 1e9, "profiles": ["premium-h200"]}
        )
        assert (
            status == 400 and body["errors"][0]["field"] == "profiles[0]"
        )  # not visible to anonymous callers


async def test_openapi_catalog_models_probes_and_page(tmp_path: Path) -> None:
    async with api_server(tmp_path) as srv:
        _, doc = await srv.get("/api/openapi.json")
        validate(doc)
        assert set(ROUTES) <= set(doc["paths"])
        _, catalog = await srv.get("/api/accelerators")
        assert any(t["name"] == "nvidia-h200-141gb" and t["memoryGB"] == 141 for t in catalog["accelerators"])
        _, models = await srv.get("/api/models")
        assert "llama-3-70b" in {m["name"] for m in models["models"]}
        assert (await srv.get("/readyz"))[0] == 200
        status, html = await srv.get("/")
        assert status == 200 and "GPU hardware profiles" in html
        assert (await srv.get("/static/app.js"))[0] == 200
        assert (await srv.get("/static/.hidden"))[0] == 404
        assert (await srv.get("/static/..%2Fapp.py"))[0] == 404
